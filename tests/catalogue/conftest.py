"""A catalogue synced once per session into a template database, cloned for each test that needs it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from activities.catalogue import CatalogueActivities
from tests.conftest import TEMPLATE_DB, Postgres, cloned_database
from tests.support.esimgo import SimHandle
from ttelgo.db import session_factory
from ttelgo.sandbox.postgres import ensure_database

SYNCED_TEMPLATE = "ttelgo_template_synced"


@pytest.fixture(scope="session")
async def synced_template(postgres: Postgres, _esimgo_sim_server: SimHandle) -> dict[str, int]:
    """Wholesale prices by bundle code, as the simulator lists them; the template holds the synced copy."""
    _esimgo_sim_server.admin.post("/reset").raise_for_status()
    await ensure_database(postgres.port, SYNCED_TEMPLATE, template=TEMPLATE_DB)
    engine = create_async_engine(postgres.url(SYNCED_TEMPLATE))
    client = _esimgo_sim_server.client()
    try:
        await CatalogueActivities(client, session_factory(engine)).sync()
        return {b.name: b.price_minor async for b in client.iter_catalogue(per_page=1000)}
    finally:
        await client.aclose()
        await engine.dispose()


@pytest.fixture
async def synced_database_url(postgres: Postgres, synced_template: dict[str, int]) -> AsyncIterator[str]:
    async with cloned_database(postgres, SYNCED_TEMPLATE) as url:
        yield url
