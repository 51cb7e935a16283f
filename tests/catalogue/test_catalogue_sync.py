"""The catalogue copy: a Temporal workflow fills catalogue_bundles; a supplier outage keeps the last copy."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from tests.support.esimgo import SimHandle
from tests.support.stack import running_worker, stack_settings
from ttelgo.catalogue.config import LAST_SYNCED_AT_KEY
from ttelgo.db import session_factory
from ttelgo.models import BundleScope, CatalogueBundle, SystemConfig
from worker import ensure_catalogue_schedule
from workflows.catalogue_sync import SCHEDULE_ID, CatalogueSyncWorkflow


async def _sync(env: WorkflowEnvironment, queue: str) -> object:
    return await env.client.execute_workflow(
        CatalogueSyncWorkflow.run, id=f"catalogue-sync-{uuid.uuid4()}", task_queue=queue
    )


async def test_sync_copies_every_bundle_and_retires_vanished_ones(
    database_url: str, temporal_env: WorkflowEnvironment, esimgo_sim: SimHandle, task_queue: str
) -> None:
    settings = stack_settings(database_url, temporal_env.client, esimgo_sim, task_queue)
    engine = create_async_engine(database_url)
    sessions = session_factory(engine)
    async with sessions() as session, session.begin():
        session.add(
            CatalogueBundle(
                code="esim_OLD_7D_XX_V1",
                description="gone",
                scope=BundleScope.LOCAL,
                countries=[],
                country_isos=["FR"],
                regions=[],
                data_mb=1,
                duration_days=7,
                unlimited=False,
                speeds=[],
                wholesale_minor=1,
                currency="USD",
                synced_at=func.now() - timedelta(days=1),
            )
        )
    try:
        async with running_worker(settings, temporal_env.client):
            result = await _sync(temporal_env, task_queue)
        supplier_rows = (await esimgo_sim.client().list_catalogue(per_page=1)).rows
        assert result.bundles == supplier_rows and result.deactivated == 1
        async with sessions() as session:
            active = await session.scalar(select(func.count()).where(CatalogueBundle.active.is_(True)))
            old = await session.get(CatalogueBundle, "esim_OLD_7D_XX_V1")
            fr = await session.get(CatalogueBundle, "esim_1GB_7D_FR_V2")
            stamp = await session.get(SystemConfig, LAST_SYNCED_AT_KEY)
            scopes = set(await session.scalars(select(CatalogueBundle.scope).distinct()))
        assert active == supplier_rows
        assert old is not None and not old.active
        assert fr is not None and fr.country_isos == ["FR"] and fr.scope is BundleScope.LOCAL
        assert stamp is not None and stamp.value == result.synced_at.isoformat()
        assert scopes == {BundleScope.LOCAL, BundleScope.REGIONAL, BundleScope.GLOBAL}
    finally:
        await engine.dispose()


async def test_supplier_outage_fails_after_retries_and_keeps_the_last_copy(
    database_url: str, time_skipping_env: WorkflowEnvironment, esimgo_sim: SimHandle, task_queue: str
) -> None:
    settings = stack_settings(database_url, time_skipping_env.client, esimgo_sim, task_queue)
    esimgo_sim.down()
    async with running_worker(settings, time_skipping_env.client):
        with pytest.raises(WorkflowFailureError):
            await _sync(time_skipping_env, task_queue)
    # Five attempts with backoff, skipped through in test time; each attempt is one failed catalogue call.
    assert esimgo_sim.stats()["requests"].get("GET /catalogue") == 5
    engine = create_async_engine(database_url)
    try:
        async with session_factory(engine)() as session:
            assert await session.scalar(select(func.count()).select_from(CatalogueBundle)) == 0
    finally:
        await engine.dispose()


async def test_worker_start_up_schedules_the_sync_and_runs_it_now(
    database_url: str, temporal_env: WorkflowEnvironment, esimgo_sim: SimHandle, task_queue: str
) -> None:
    settings = stack_settings(
        database_url, temporal_env.client, esimgo_sim, task_queue, catalogue_sync_minutes=20
    )
    client = temporal_env.client
    await ensure_catalogue_schedule(client, settings)
    await ensure_catalogue_schedule(client, settings)  # a restart: the schedule exists, so trigger it again
    handle = client.get_schedule_handle(SCHEDULE_ID)
    try:
        description = await handle.describe()
        assert description.schedule.spec.intervals[0].every == timedelta(minutes=20)
        deadline = asyncio.get_running_loop().time() + 10
        while description.info.num_actions < 1:
            assert asyncio.get_running_loop().time() < deadline, "the start-up trigger never ran"
            await asyncio.sleep(0.1)
            description = await handle.describe()
        # No worker polls this queue, so the first run is still going and the second trigger was skipped.
        [running] = description.info.running_actions
        assert running.workflow_id.startswith("catalogue-sync")
        await client.get_workflow_handle(running.workflow_id).terminate()
    finally:
        await handle.delete()
