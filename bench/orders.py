"""Benchmark: concurrent vendor orders through the REST API on the full local stack, as users run it, against
a bare workflow of three no-op activities on the same Temporal server (the ceiling) and eSIM Go's limit.

    .venv/bin/python -m bench.orders [--orders 200] [--concurrency 20]

Starts embedded PostgreSQL, the Temporal dev server, the eSIM Go simulator (no faults, but eSIM Go's real
limit of 10 requests/s), one worker and two APIs as separate processes: one as users run it (waiting orders
bought together, ESIMGO_BATCH_ORDERS on) and one with it off (one supplier order per order), both with the
supplier pacing at its default. Each funds a vendor, then measures request → COMPLETED (POST
/api/v1/vendor/orders?wait=30 answers 201 once the order is COMPLETED) at `--concurrency` and at 10 clients,
counting the supplier order calls each round made. Prints the RSS of the APIs and the worker around each.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable

import httpx
import psutil
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
    apis: dict[str, str],
    temporal: Client,
    sim: SupplierCalls,
    orders: int,
    concurrency: int,
    processes: dict[str, ManagedProcess],
) -> None:
    """For each API (batching on, then off): `concurrency` clients and 10 clients (the p99 goal), each round
    with the CPU every process spent per order; then the bare workflow."""
    results: dict[str, float] = {}
    for label, api in apis.items():
        async with httpx.AsyncClient(base_url=api, timeout=60) as http:
            order = await _vendor_orders(http)
            await measure(10, 5, order)  # warm-up: connections, caches, workflow cache
            for clients in (concurrency, 10):
                print_rss(f"before {label} × {clients}", processes)
                calls_before, cpu_before = sim.order_calls(), cpu_seconds(processes)
                run = await measure(orders, clients, order)
                calls, cpu_after = sim.order_calls() - calls_before, cpu_seconds(processes)
                print_rss("after", processes)
                name = f"orders, batching {label}, {clients} clients"
                results[name] = report(name, orders, *run)
                print(
                    f"  {calls} supplier order calls: {orders / max(calls, 1):.1f} orders per call, "
                    f"{calls / run[0]:.1f} calls/s"
                )
                spent = {name: (cpu_after[name] - cpu_before[name]) * 1000 / orders for name in cpu_after}
                print(
                    "  CPU per order: "
                    + ", ".join(f"{name} {ms:.1f} ms" for name, ms in spent.items())
                    + f"; all {sum(spent.values()):.1f} ms (on {os.cpu_count()} cores: "
                    f"{os.cpu_count() * 1000 / sum(spent.values()):.0f} orders/s at most)"
                )

    async with Worker(temporal, task_queue="bench-noop", workflows=[ThreeNoopsWorkflow], activities=[noop]):

        async def bare(_: int) -> bool:
            await temporal.execute_workflow(
                ThreeNoopsWorkflow.run, id=f"bench-{uuid.uuid4()}", task_queue="bench-noop"
            )
            return True

        await measure(10, 5, bare)
        ceiling = report(
            "bare workflow, 3 no-op activities", orders, *await measure(orders, concurrency, bare)
        )

    print()
    for name, rate in results.items():
        print(
            f"{name}: {rate / ceiling:.2f} of the bare ceiling, {rate / SUPPLIER_LIMIT_PER_S:.2f}× eSIM Go's "
            f"{SUPPLIER_LIMIT_PER_S} requests/s"
        )


async def _vendor_orders(http: httpx.AsyncClient) -> Callable[[int], Awaitable[bool]]:
    """A funded vendor of this API and one order of it, as a load function."""
    login = await http.post("/api/v1/auth/login", json={"email": ADMIN[0], "password": ADMIN[1]})
    admin = {"Authorization": f"Bearer {login.json()['access_token']}"}
    vendor = (
        await http.post(
            "/api/v1/admin/vendors",
            headers={**admin, "Idempotency-Key": str(uuid.uuid4())},
            json={
                "name": "Bench",
                "contact_email": f"shop-{uuid.uuid4().hex[:8]}@example.com",
                "markup_bps": 0,
            },
        )
    ).json()
    await http.post(f"/api/v1/admin/vendors/{vendor['id']}/approve", headers=admin)
    await http.post(
        f"/api/v1/admin/vendors/{vendor['id']}/adjust-balance",
        headers={**admin, "Idempotency-Key": str(uuid.uuid4())},
        json={"amount_minor": 100_000_000, "reason": "benchmark funds"},
    )
    key = (
        await http.post(f"/api/v1/admin/vendors/{vendor['id']}/api-keys", json={"name": "b"}, headers=admin)
    ).json()["key"]

    async def order(_: int) -> bool:
        response = await http.post(
            "/api/v1/vendor/orders",
            params={"wait": 30},
            json={"bundle_code": "esim_1GB_7D_FR_V2", "quantity": 1},
            headers={"X-API-Key": key, "Idempotency-Key": str(uuid.uuid4())},
        )
        return response.status_code == 201 and response.json()["status"] == "COMPLETED"

    return order


class SupplierCalls:
    """The simulator's count of order calls (POST /orders), read from its control panel."""

    def __init__(self, base: str) -> None:
        self.base = base

    def order_calls(self) -> int:
        stats = httpx.get(f"{self.base}/_sim/stats").json()
        return int(stats["requests"].get("POST /orders", 0))


def cpu_seconds(processes: dict[str, ManagedProcess]) -> dict[str, float]:
    """User + system CPU of each process and its children (PostgreSQL's backends), so far."""
    spent = {}
    for name, process in processes.items():
        root = psutil.Process(process.pid)
        spent[name] = sum(sum(p.cpu_times()[:2]) for p in [root, *root.children(recursive=True)])
    return spent


def print_rss(when: str, processes: dict[str, ManagedProcess]) -> None:
    print(", ".join(f"{name} RSS {when}: {rss_mb(p.pid):.0f} MB" for name, p in processes.items()))


def main() -> None:
    cli = parser(__doc__, concurrency=20)
    cli.add_argument("--orders", type=int, default=200)
    args = cli.parse_args()
    with Stack() as stack:
        database_url = stack.postgres()
        postgres = stack.processes[-1]
        temporal_port, temporal_server = stack.temporal()
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
            unbatched, api_unbatched = stack.api("api-unbatched", {**env, "ESIMGO_BATCH_ORDERS": "false"})
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
                await bench(
                    {"on": base, "off": unbatched},
                    temporal,
                    SupplierCalls(sim),
                    args.orders,
                    args.concurrency,
                    {
                        "API": api,
                        "API (batching off)": api_unbatched,
                        "worker": worker,
                        "Temporal": temporal_server,
                        "PostgreSQL": postgres,
                    },
                )

            asyncio.run(run())


if __name__ == "__main__":
    main()
