"""Builds the activity instances with their shared clients (one DB pool, one eSIM Go client per process)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from activities.catalogue import CatalogueActivities
from activities.esims import EsimActivities
from ttelgo.db import create_engine, session_factory
from ttelgo.esimgo import EsimGoClient
from ttelgo.settings import Settings


async def build_activities(
    settings: Settings,
) -> tuple[list[Callable[..., Any]], Callable[[], Awaitable[None]]]:
    """The activities, and a function that closes what they hold."""
    assert settings.database_url and settings.esimgo_api_url and settings.esimgo_api_key
    engine = create_engine(settings.database_url)
    esimgo = EsimGoClient(
        settings.esimgo_api_url,
        settings.esimgo_api_key,
        max_requests_per_second=settings.esimgo_max_requests_per_second,
    )
    sessions = session_factory(engine)
    catalogue = CatalogueActivities(esimgo, sessions)
    esims = EsimActivities(sessions)

    async def close() -> None:
        await esimgo.aclose()
        await engine.dispose()

    return [catalogue.sync, esims.apply_usage], close
