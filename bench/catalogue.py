"""Benchmark: GET /api/v1/catalogue?country=FR against a bare endpoint with a similar body, same server.

    .venv/bin/python -m bench.catalogue [--seconds 10] [--concurrency 32] [--rounds 2]

Starts embedded PostgreSQL and the eSIM Go simulator, copies the catalogue, serves the API with uvicorn
(one process, as in production) and loads both endpoints alternately from a separate process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path

import httpx

from activities.catalogue import CatalogueActivities
from api.app import create_app
from bench.loadgen import LoadResult, run_load
from ttelgo import migrate
from ttelgo.db import create_engine, session_factory
from ttelgo.esimgo import EsimGoClient
from ttelgo.sandbox.esimgo_sim import SimConfig
from ttelgo.sandbox.esimgo_sim import create_app as create_sim
from ttelgo.sandbox.postgres import ensure_database, start_postgres
from ttelgo.sandbox.processes import ManagedProcess, free_port, wait_until
from ttelgo.sandbox.threaded_server import serve_in_thread
from ttelgo.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


async def copy_catalogue(database_url: str, sim_url: str) -> None:
    engine = create_engine(database_url)
    client = EsimGoClient(f"{sim_url}/v2.4", "bench-key", max_requests_per_second=0)
    try:
        result = await CatalogueActivities(client, session_factory(engine)).sync()
        print(f"catalogue copied: {result.bundles} bundles")
    finally:
        await client.aclose()
        await engine.dispose()


async def catalogue_body(env: dict[str, str]) -> object:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=env["DATABASE_URL"],
        temporal_address=env["TEMPORAL_ADDRESS"],
        log_level="WARNING",  # the load generator shares this process: no per-request log lines
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            return (await client.get("/api/v1/catalogue", params={"country": "FR"})).json()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ttelgo-bench-"))
    pg_port, api_port = free_port(), free_port()
    database_url = f"postgresql+asyncpg://postgres@127.0.0.1:{pg_port}/ttelgo"
    postgres = start_postgres(work / "pg", pg_port, work / "postgres.log")
    api: ManagedProcess | None = None
    try:
        asyncio.run(ensure_database(pg_port, "ttelgo"))
        migrate.upgrade(database_url)
        with serve_in_thread(create_sim(SimConfig(api_key="bench-key", rate_limit_per_second=0))) as sim_url:
            asyncio.run(copy_catalogue(database_url, sim_url))
        base = f"http://127.0.0.1:{api_port}"
        catalogue_url = f"{base}/api/v1/catalogue?country=FR"
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "JWT_SECRET": "bench",
            "LOG_LEVEL": "WARNING",
            "RATE_LIMIT_ENABLED": "false",  # one client IP at hundreds of requests a second
            "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
            "BENCH_BARE_BODY": str(work / "body.json"),
        }
        api = ManagedProcess(
            "api",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "bench.bare_app:create_bench_app",
                "--factory",
                "--port",
                str(api_port),
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            work / "api.log",
            env,
            ROOT,
        )
        # The bare endpoint returns the very body the catalogue answers for France.
        (work / "body.json").write_text(json.dumps(asyncio.run(catalogue_body(env))))
        api.start()
        wait_until(lambda: httpx.get(f"{base}/healthz").status_code == 200, 30, "waiting for the API", api)
        sizes = {u: len(httpx.get(u).content) for u in (catalogue_url, f"{base}/bench/bare")}
        print(f"body sizes: catalogue {sizes[catalogue_url]} B, bare {sizes[f'{base}/bench/bare']} B")

        results: dict[str, list[LoadResult]] = {"bare": [], "catalogue": []}
        for round_no in range(1, args.rounds + 1):
            for label, url in (("bare", f"{base}/bench/bare"), ("catalogue", catalogue_url)):
                result = asyncio.run(
                    run_load(
                        url,
                        label=f"{label} (round {round_no})",
                        concurrency=args.concurrency,
                        seconds=args.seconds,
                    )
                )
                results[label].append(result)
                print(result.line())
        bare = max(results["bare"], key=lambda r: r.rps)
        catalogue = max(results["catalogue"], key=lambda r: r.rps)
        print(
            f"\nbest of {args.rounds}: bare {bare.rps:.0f} req/s (p99 {bare.p99_ms:.1f} ms), "
            f"catalogue {catalogue.rps:.0f} req/s (p99 {catalogue.p99_ms:.1f} ms), "
            f"ratio {catalogue.rps / bare.rps:.2f}"
        )
    finally:
        if api is not None:
            api.stop()
        postgres.stop()


if __name__ == "__main__":
    main()
