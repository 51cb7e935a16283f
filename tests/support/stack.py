"""Our own processes inside a test: the worker on the test's task queue, and the API over ASGI."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from temporalio.client import Client

from activities.registry import build_activities
from api.app import create_app
from tests.conftest import make_settings
from tests.support.esimgo import SIM_API_KEY, SimHandle
from ttelgo.settings import Settings
from worker import build_workers


def stack_settings(
    database_url: str, client: Client, sim: SimHandle, task_queue: str, **extra: object
) -> Settings:
    return make_settings(
        database_url=database_url,
        temporal_address=client.service_client.config.target_host,
        temporal_task_queue=task_queue,
        esimgo_api_url=sim.api_url,
        esimgo_api_key=SIM_API_KEY,
        esimgo_max_requests_per_second=0,
        esimgo_task_queue=f"{task_queue}-esimgo",
        # A call lost mid-way is looked for after this; the simulator commits at once.
        **{"esimgo_commit_delay_seconds": 2, **extra},
    ).resolved()


@asynccontextmanager
async def running_worker(settings: Settings, client: Client) -> AsyncIterator[None]:
    """Both of the worker process's workers, in this test's event loop."""
    activities = await build_activities(settings)
    try:
        async with contextlib.AsyncExitStack() as stack:
            for worker in build_workers(client, settings, activities):
                await stack.enter_async_context(worker)
            yield
    finally:
        await activities.close()


@asynccontextmanager
async def api_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            yield client
