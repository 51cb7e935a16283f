"""Benchmark: concurrent vendor orders through the REST API on the full local stack, as users run it, against
a bare workflow of three no-op activities on the same Temporal server (the ceiling) and the supplier's bound.

    .venv/bin/python -m bench.orders [--orders 200] [--concurrency 20]

Starts embedded PostgreSQL, the Temporal dev server, the eSIM Go simulator (no faults, but eSIM Go's real
limit of 10 requests/s), the worker and the API as separate processes, funds one vendor, then measures
request → COMPLETED (POST /api/v1/vendor/orders?wait=30 answers 201 once the order is COMPLETED). The
supplier pacing stays at its default (ESIMGO_MAX_REQUESTS_PER_SECOND), so with one supplier call per
order that pacing is the platform's ceiling whatever else runs: it is printed as the supplier-bound
reference. Prints the RSS of the API and the worker before and after.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable

import httpx
from temporalio.client import Client
from temporalio.worker import Worker

from bench.loadgen import rss_mb
from bench.noop_workflow import ThreeNoopsWorkflow, noop
from bench.stack import Stack, api_env, parser
from ttelgo import codec
from ttelgo.admins import ensure_admin
from ttelgo.db import create_engine, session_factory
from ttelgo.sandbox.esimgo_sim import SimConfig
from ttelgo.sandbox.esimgo_sim import create_app as create_sim
from ttelgo.sandbox.processes import ManagedProcess, free_port, wait_until
from ttelgo.sandbox.threaded_server import serve_in_thread
from ttelgo.settings import Settings

SUPPLIER_LIMIT_PER_S = 10  # eSIM Go's, per account

ADMIN = ("bench@example.com", "bench password 123")


async def measure(
    n: int, concurrency: int, one: Callable[[int], Awaitable[bool]]
) -> tuple[float, list[float], int]:
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    failures = 0

    async def run(i: int) -> None:
        nonlocal failures
        async with gate:
            started = time.perf_counter()
            ok = await one(i)
            latencies.append(time.perf_counter() - started)
            failures += not ok

    started = time.perf_counter()
    await asyncio.gather(*(run(i) for i in range(n)))
    return time.perf_counter() - started, latencies, failures


def report(label: str, n: int, elapsed: float, latencies: list[float], failures: int) -> float:
    q = statistics.quantiles(latencies, n=100)
    rate = n / elapsed
    print(
        f"{label:<34} {rate:7.1f}/s   p50 {q[49] * 1000:7.1f} ms   p99 {q[98] * 1000:7.1f} ms   "
        f"({n} runs, {failures} failed)"
    )
    return rate


async def bench(
    api: str, temporal: Client, orders: int, concurrency: int, processes: dict[str, ManagedProcess]
) -> None:
    async with httpx.AsyncClient(base_url=api, timeout=60) as http:
        login = await http.post("/api/v1/auth/login", json={"email": ADMIN[0], "password": ADMIN[1]})
        admin = {"Authorization": f"Bearer {login.json()['access_token']}"}
        vendor = (
            await http.post(
                "/api/v1/admin/vendors",
                headers={**admin, "Idempotency-Key": "v"},
                json={"name": "Bench", "contact_email": "shop@example.com", "markup_bps": 0},
            )
        ).json()
        await http.post(f"/api/v1/admin/vendors/{vendor['id']}/approve", headers=admin)
        await http.post(
            f"/api/v1/admin/vendors/{vendor['id']}/adjust-balance",
            headers={**admin, "Idempotency-Key": "f"},
            json={"amount_minor": 100_000_000, "reason": "benchmark funds"},
        )
        key = (
            await http.post(
                f"/api/v1/admin/vendors/{vendor['id']}/api-keys", json={"name": "b"}, headers=admin
            )
        ).json()["key"]

        async def order(_: int) -> bool:
            response = await http.post(
                "/api/v1/vendor/orders",
                params={"wait": 30},
                json={"bundle_code": "esim_1GB_7D_FR_V2", "quantity": 1},
                headers={"X-API-Key": key, "Idempotency-Key": str(uuid.uuid4())},
            )
            return response.status_code == 201 and response.json()["status"] == "COMPLETED"

        await measure(10, 5, order)  # warm-up: connections, caches, workflow cache
        print_rss("before", processes)
        orders_result = await measure(orders, concurrency, order)
        print_rss("after", processes)

    async with Worker(temporal, task_queue="bench-noop", workflows=[ThreeNoopsWorkflow], activities=[noop]):

        async def bare(_: int) -> bool:
            await temporal.execute_workflow(
                ThreeNoopsWorkflow.run, id=f"bench-{uuid.uuid4()}", task_queue="bench-noop"
            )
            return True

        await measure(10, 5, bare)
        bare_result = await measure(orders, concurrency, bare)

    ordered = report("vendor orders (REST → COMPLETED)", orders, *orders_result)
    ceiling = report("bare workflow, 3 no-op activities", orders, *bare_result)
    pacing = Settings.model_fields["esimgo_max_requests_per_second"].default
    supplier_bound = min(pacing, SUPPLIER_LIMIT_PER_S)
    print(f"\nratio orders / bare ceiling: {ordered / ceiling:.2f}")
    print(
        f"supplier-bound reference: {supplier_bound:.0f} orders/s (one supplier call per order, paced at "
        f"{pacing:g}/s under eSIM Go's {SUPPLIER_LIMIT_PER_S}/s); ratio orders / that bound: "
        f"{ordered / supplier_bound:.2f}"
    )


def print_rss(when: str, processes: dict[str, ManagedProcess]) -> None:
    print(", ".join(f"{name} RSS {when}: {rss_mb(p.pid):.0f} MB" for name, p in processes.items()))


def main() -> None:
    cli = parser(__doc__, concurrency=20)
    cli.add_argument("--orders", type=int, default=200)
    args = cli.parse_args()
    with Stack() as stack:
        database_url = stack.postgres()
        temporal_port, _ = stack.temporal()
        payload_keys = codec.new_key_spec("bench")  # encrypted payloads, as users run it
        sim_config = SimConfig(api_key="bench-key", rate_limit_per_second=SUPPLIER_LIMIT_PER_S)
        with serve_in_thread(create_sim(sim_config)) as sim:
            env = api_env(
                database_url,
                temporal_port,
                ESIMGO_API_URL=f"{sim}/v2.4",
                ESIMGO_API_KEY="bench-key",
                WORKER_METRICS_PORT=str(free_port()),
                TEMPORAL_PAYLOAD_KEYS=payload_keys,
                # The per-vendor default (300/minute) would bound this one key, not the platform.
                RATE_LIMIT_ENABLED="false",
            )

            async def seed() -> None:
                engine = create_engine(database_url, pool_size=1)
                async with session_factory(engine)() as session:
                    await ensure_admin(session, *ADMIN)
                await engine.dispose()

            asyncio.run(seed())
            worker = stack.start("worker", [sys.executable, "worker.py"], env)
            base, api = stack.api("api", env)
            # The worker copies the catalogue at start-up; orders need it.
            wait_until(
                lambda: httpx.get(f"{base}/api/v1/catalogue/bundles/esim_1GB_7D_FR_V2").status_code == 200,
                60,
                "waiting for the catalogue copy",
                worker,
            )

            async def run() -> None:
                temporal = await Client.connect(
                    f"127.0.0.1:{temporal_port}", data_converter=codec.data_converter(payload_keys)
                )
                await bench(base, temporal, args.orders, args.concurrency, {"API": api, "worker": worker})

            asyncio.run(run())


if __name__ == "__main__":
    main()
