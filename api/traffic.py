"""The API's traffic controls, started and stopped with the app: who is calling (`api.callers`), the rate
limiter (`ttelgo.ratelimit`) and the usage log writer (`api.usage`)."""

from __future__ import annotations

from fastapi import FastAPI

from api.callers import CallerDirectory
from api.usage import UsageRecorder
from ttelgo.ratelimit import build_rate_limiter
from ttelgo.settings import Settings


async def start_traffic_controls(app: FastAPI, settings: Settings) -> None:
    """Call once the app's database sessions exist."""
    app.state.callers = CallerDirectory(
        app.state.sessions, str(settings.jwt_secret), settings.rate_limit_cache_seconds
    )
    app.state.rate_limiter = build_rate_limiter(settings)
    app.state.usage = UsageRecorder(app.state.sessions)


async def stop_traffic_controls(app: FastAPI) -> None:
    """Writes the usage rows still buffered; call before the database engine is disposed."""
    await app.state.usage.close()
    if app.state.rate_limiter is not None:
        await app.state.rate_limiter.close()
