"""Benchmark: concurrent vendor orders through the REST API on the full local stack, against a bare
workflow of three no-op activities on the same Temporal server (the ceiling).

    .venv/bin/python -m bench.orders [--orders 200] [--concurrency 20]

Starts embedded PostgreSQL, the Temporal dev server, the eSIM Go simulator (no faults, no rate limit),
the worker and the API as separate processes, funds one vendor, then measures request → COMPLETED
(POST /api/v1/vendor/orders?wait=30 answers 201 once the order is COMPLETED).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from temporalio.client import Client
from temporalio.worker import Worker

from bench.noop_workflow import ThreeNoopsWorkflow, noop
from ttelgo import codec, migrate
from ttelgo.admins import ensure_admin
from ttelgo.db import create_engine, session_factory
from ttelgo.sandbox.esimgo_sim import SimConfig
from ttelgo.sandbox.esimgo_sim import create_app as create_sim
from ttelgo.sandbox.postgres import ensure_database, start_postgres
from ttelgo.sandbox.processes import ManagedProcess, free_port, wait_until
from ttelgo.sandbox.temporal_server import start_temporal
from ttelgo.sandbox.threaded_server import serve_in_thread

ROOT = Path(__file__).resolve().parent.parent
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


async def bench(api: str, temporal: Client, orders: int, concurrency: int) -> None:
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
        orders_result = await measure(orders, concurrency, order)

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
    print(f"\nratio orders / bare ceiling: {ordered / ceiling:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ttelgo-bench-"))
    ports = {name: free_port() for name in ("pg", "temporal", "ui", "api", "metrics")}
    database_url = f"postgresql+asyncpg://postgres@127.0.0.1:{ports['pg']}/ttelgo"
    processes: list[ManagedProcess] = []
    try:
        processes.append(start_postgres(work / "pg", ports["pg"], work / "postgres.log"))
        asyncio.run(ensure_database(ports["pg"], "ttelgo"))
        migrate.upgrade(database_url)
        processes.append(
            start_temporal(work / "temporal", ports["temporal"], ports["ui"], work / "temporal.log")
        )
        payload_keys = codec.new_key_spec("bench")  # encrypted payloads, as users run it
        with serve_in_thread(create_sim(SimConfig(api_key="bench-key", rate_limit_per_second=0))) as sim:
            env = {
                **os.environ,
                "DATABASE_URL": database_url,
                "TEMPORAL_ADDRESS": f"127.0.0.1:{ports['temporal']}",
                "ESIMGO_API_URL": f"{sim}/v2.4",
                "ESIMGO_API_KEY": "bench-key",
                "JWT_SECRET": "bench-secret",
                "ESIMGO_MAX_REQUESTS_PER_SECOND": "0",
                "WORKER_METRICS_PORT": str(ports["metrics"]),
                "LOG_LEVEL": "WARNING",
                "TEMPORAL_PAYLOAD_KEYS": payload_keys,
                "RATE_LIMIT_ENABLED": "false",  # one API key at hundreds of orders a second
            }

            async def seed() -> None:
                engine = create_engine(database_url, pool_size=1)
                async with session_factory(engine)() as session:
                    await ensure_admin(session, *ADMIN)
                await engine.dispose()

            asyncio.run(seed())
            worker = ManagedProcess(
                "worker", [sys.executable, "worker.py"], work / "worker.log", env, ROOT
            ).start()
            processes.append(worker)
            api = ManagedProcess(
                "api",
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "api.app:create_app",
                    "--factory",
                    "--port",
                    str(ports["api"]),
                    "--no-access-log",
                ],
                work / "api.log",
                env,
                ROOT,
            ).start()
            processes.append(api)
            base = f"http://127.0.0.1:{ports['api']}"
            wait_until(lambda: httpx.get(f"{base}/readyz").status_code == 200, 60, "waiting for the API", api)
            # The worker copies the catalogue at start-up; orders need it.
            wait_until(
                lambda: httpx.get(f"{base}/api/v1/catalogue/bundles/esim_1GB_7D_FR_V2").status_code == 200,
                60,
                "waiting for the catalogue copy",
                worker,
            )

            async def run() -> None:
                temporal = await Client.connect(
                    f"127.0.0.1:{ports['temporal']}", data_converter=codec.data_converter(payload_keys)
                )
                await bench(base, temporal, args.orders, args.concurrency)

            asyncio.run(run())
    finally:
        for process in reversed(processes):
            process.stop()


if __name__ == "__main__":
    main()
