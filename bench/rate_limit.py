"""Benchmark: what the rate limiter adds to a request — the same routes on two API processes over one
database, rate limits on (counted in PostgreSQL, the default store) and off, loaded alternately.

    .venv/bin/python -m bench.rate_limit [--seconds 8] [--concurrency 16] [--rounds 2]

Routes: `GET /api/v1/errors` (anonymous, no database work of its own: the limiter's cost shows in full)
and `GET /api/v1/vendor/wallet` with an API key (a typical vendor read). The limits are set far above the
load, so every request is counted and none refused.
"""

from __future__ import annotations

import asyncio
import sys

import httpx

from bench.loadgen import LoadResult, run_load
from bench.stack import Stack, api_env, parser, wait_ready
from ttelgo.admins import ensure_admin
from ttelgo.db import create_engine, session_factory
from ttelgo.sandbox.processes import ManagedProcess, free_port

ADMIN = ("bench@example.com", "bench admin password")
UNREACHED = "1000000000/minute"


async def seed(database_url: str, api: str) -> str:
    """An approved vendor's API key."""
    engine = create_engine(database_url, pool_size=1)
    async with session_factory(engine)() as session:
        await ensure_admin(session, *ADMIN)
    await engine.dispose()
    async with httpx.AsyncClient(base_url=api, timeout=30) as http:
        login = await http.post("/api/v1/auth/login", json={"email": ADMIN[0], "password": ADMIN[1]})
        admin = {"Authorization": f"Bearer {login.json()['access_token']}"}
        vendor = (
            await http.post(
                "/api/v1/admin/vendors",
                headers={**admin, "Idempotency-Key": "v"},
                json={"name": "Bench", "contact_email": "shop@example.com"},
            )
        ).json()
        await http.post(f"/api/v1/admin/vendors/{vendor['id']}/approve", headers=admin)
        key = await http.post(
            f"/api/v1/admin/vendors/{vendor['id']}/api-keys", json={"name": "b"}, headers=admin
        )
        return str(key.json()["key"])


def main() -> None:
    cli = parser(__doc__, concurrency=16, rounds=2)
    cli.add_argument("--seconds", type=float, default=8)
    args = cli.parse_args()
    with Stack() as stack:
        env = api_env(stack.postgres())
        limits_on = {
            "RATE_LIMIT_ENABLED": "true",
            **{f"RATE_LIMIT_{p}": UNREACHED for p in ("VENDOR", "USER", "ANONYMOUS", "AUTH")},
        }
        apis: dict[str, tuple[str, ManagedProcess]] = {}
        for label, extra in (("limits off", {"RATE_LIMIT_ENABLED": "false"}), ("limits on", limits_on)):
            port = free_port()
            name = label.replace(" ", "-")
            command = [
                sys.executable,
                "-m",
                "uvicorn",
                "api.app:create_app",
                "--factory",
                "--port",
                str(port),
            ]
            command += ["--no-access-log", "--log-level", "warning"]
            process = stack.start(name, command, {**env, **extra})
            base = f"http://127.0.0.1:{port}"
            wait_ready(base, process, "/healthz")
            apis[label] = (base, process)
        key = asyncio.run(seed(env["DATABASE_URL"], apis["limits off"][0]))

        routes = {
            "GET /api/v1/errors": ("/api/v1/errors", {}),
            "GET /api/v1/vendor/wallet": ("/api/v1/vendor/wallet", {"X-API-Key": key}),
        }
        for route, (path, headers) in routes.items():
            results: dict[str, list[LoadResult]] = {label: [] for label in apis}
            for round_no in range(1, args.rounds + 1):
                for label, (base, _) in apis.items():
                    result = asyncio.run(
                        run_load(
                            f"{base}{path}",
                            label=f"{label} (round {round_no})",
                            concurrency=args.concurrency,
                            seconds=args.seconds,
                            headers=headers,
                        )
                    )
                    results[label].append(result)
                    print(f"{route:<28} {result.line()}")
            off = max(results["limits off"], key=lambda r: r.rps)
            on = max(results["limits on"], key=lambda r: r.rps)
            added_ms = 1000 * (1 / on.rps - 1 / off.rps) * args.concurrency
            print(
                f"\n{route}, best of {args.rounds}: off {off.rps:.0f} req/s (p50 {off.p50_ms:.2f} ms), "
                f"on {on.rps:.0f} req/s (p50 {on.p50_ms:.2f} ms); ratio {on.rps / off.rps:.2f}, "
                f"about {added_ms:.2f} ms added per request at {args.concurrency} concurrent\n"
            )


if __name__ == "__main__":
    main()
