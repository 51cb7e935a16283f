"""Our own processes inside a test: the worker on the test's task queue, and the API over ASGI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from temporalio.client import Client
from temporalio.worker import Worker

from activities.registry import build_activities
from api.app import create_app
from tests.conftest import make_settings
from tests.support.esimgo import SIM_API_KEY, SimHandle
from ttelgo.settings import Settings
from workflows.registry import WORKFLOWS


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
        **extra,
    ).resolved()


@asynccontextmanager
async def running_worker(settings: Settings, client: Client) -> AsyncIterator[Worker]:
    activities, close = await build_activities(settings)
    try:
        async with Worker(
            client, task_queue=settings.temporal_task_queue, workflows=WORKFLOWS, activities=activities
        ) as worker:
            yield worker
    finally:
        await close()


@asynccontextmanager
async def api_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            yield client
