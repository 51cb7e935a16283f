"""Benchmark: the public catalogue against `/healthz` on the same API process (`python -m api.serve`), loaded
alternately from separate client processes, on two API processes over one database: rate limits on, as
users run it (counted in PostgreSQL, the default store; the anonymous limit set far above the load, so every
request is counted and none refused), and off (the rendering alone). `/healthz` is never rate limited.

    .venv/bin/python -m bench.catalogue [--seconds 8] [--concurrency 32] [--rounds 2] [--clients 2]

Routes: `/healthz` (the baseline: the same middleware, no work of its own), `GET /api/v1/catalogue?country=FR`
(29.7 KB), the same with the ETag a client already holds (`If-None-Match`, answered 304), and
`/api/v1/catalogue/bundles/{code}`. Starts embedded PostgreSQL and the eSIM Go simulator and copies the
catalogue; prints the API's RSS before and after.
"""

from __future__ import annotations

import asyncio

import httpx

from activities.catalogue import CatalogueActivities
from bench.loadgen import LoadResult, print_summary, rss_mb, run_load
from bench.stack import Stack, api_env, http_load_parser, wait_ready
from ttelgo.db import create_engine, session_factory
from ttelgo.esimgo import EsimGoClient
from ttelgo.sandbox.esimgo_sim import SimConfig
from ttelgo.sandbox.esimgo_sim import create_app as create_sim
from ttelgo.sandbox.threaded_server import serve_in_thread

BUNDLE = "esim_1GB_7D_FR_V2"
UNREACHED = "1000000000/minute"


async def copy_catalogue(database_url: str, sim_url: str) -> None:
    engine = create_engine(database_url)
    client = EsimGoClient(f"{sim_url}/v2.4", "bench-key", max_requests_per_second=0)
    try:
        result = await CatalogueActivities(client, session_factory(engine)).sync()
        print(f"catalogue copied: {result.bundles} bundles")
    finally:
        await client.aclose()
        await engine.dispose()


def main() -> None:
    args = http_load_parser(__doc__).parse_args()
    routes: dict[str, dict[str, tuple[str, dict[str, str], frozenset[int]]]] = {}
    with Stack() as stack:
        database_url = stack.postgres()
        with serve_in_thread(create_sim(SimConfig(api_key="bench-key", rate_limit_per_second=0))) as sim_url:
            asyncio.run(copy_catalogue(database_url, sim_url))
        env = api_env(
            database_url,
            STRIPE_SECRET_KEY="sk_test_bench",
            RATE_LIMIT_ANONYMOUS=UNREACHED,  # one client IP at thousands of requests a second
        )  # no Temporal address: the catalogue needs none
        apis = {
            label: stack.api(
                f"api-{label.replace(' ', '-')}",
                {**env, "RATE_LIMIT_ENABLED": enabled},
                root=args.api_root,
                ready=None,
            )
            for label, enabled in (("limits on", "true"), ("limits off", "false"))
        }
        for base, process in apis.values():
            wait_ready(base, process, "/healthz")
        for label, (base, process) in apis.items():
            catalogue_url = f"{base}/api/v1/catalogue?country=FR"
            first = httpx.get(catalogue_url)
            print(f"{label}: catalogue body {len(first.content)} B, ETag {first.headers['ETag']}")
            routes[label] = {
                "healthz": (f"{base}/healthz", {}, frozenset({200})),
                "catalogue country=FR": (catalogue_url, {}, frozenset({200})),
                "same, If-None-Match (304)": (
                    catalogue_url,
                    {"If-None-Match": first.headers["ETag"]},
                    frozenset({304}),
                ),
                "bundle detail": (f"{base}/api/v1/catalogue/bundles/{BUNDLE}", {}, frozenset({200})),
            }
            print(f"{label}: API RSS before {rss_mb(process.pid):.0f} MB")
        results: dict[tuple[str, str], list[LoadResult]] = {}
        for round_no in range(1, args.rounds + 1):
            for label, (_, process) in apis.items():
                for route, (url, headers, ok) in routes[label].items():
                    result = asyncio.run(
                        run_load(
                            url,
                            label=f"{label}: {route} (round {round_no})",
                            concurrency=args.concurrency,
                            seconds=args.seconds,
                            headers=headers,
                            ok=ok,
                            processes=args.clients,
                            server_pid=process.pid,
                        )
                    )
                    results.setdefault((label, route), []).append(result)
                    print(result.line(), flush=True)
        for label, (_, process) in apis.items():
            print(f"{label}: API RSS after {rss_mb(process.pid):.0f} MB")
            best = {route: max(results[(label, route)], key=lambda r: r.rps) for route in routes[label]}
            print(f"\n{label}: best of {args.rounds} rounds, {args.concurrency} concurrent clients:")
            print_summary(best)


if __name__ == "__main__":
    main()
