"""The worker process puts reconciliation on a Temporal Schedule, and its findings on its metrics."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine
from temporalio.testing import WorkflowEnvironment

import worker
from tests.b2c.conftest import STRIPE_KEY, WEBHOOK_SECRET
from tests.reconciliation.conftest import BUNDLE
from tests.support.esimgo import SimHandle
from tests.support.stack import stack_settings
from ttelgo.db import session_factory
from ttelgo.models import ReconciliationRun
from ttelgo.sandbox.processes import free_port
from workflows.reconciliation import SCHEDULE_ID


async def test_the_worker_schedules_reconciliation_and_counts_findings(
    synced_database_url: str,
    temporal_env: WorkflowEnvironment,
    esimgo_sim: SimHandle,
    task_queue: str,
    localstripe: str,
) -> None:
    settings = stack_settings(
        synced_database_url,
        temporal_env.client,
        esimgo_sim,
        task_queue,
        stripe_secret_key=STRIPE_KEY,
        stripe_api_base=localstripe,
        stripe_webhook_secret=WEBHOOK_SECRET,
        worker_metrics_port=free_port(),
        reconciliation_minutes=45,
        reconciliation_window_minutes=90,
        reconciliation_grace_minutes=0,
    )
    client = temporal_env.client
    sim = esimgo_sim.client()
    placed = await sim.create_order(BUNDLE, 1)  # something for the scheduled run to find
    await sim.aclose()
    engine = create_async_engine(synced_database_url)
    with contextlib.suppress(Exception):  # another test's worker may have left one on the shared server
        await client.get_schedule_handle(SCHEDULE_ID).delete()
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(settings, stop))
    handle = client.get_schedule_handle(SCHEDULE_ID)
    try:
        for _ in range(100):
            with contextlib.suppress(Exception):
                description = await handle.describe()
                break
            assert not running.done(), running.exception()
            await asyncio.sleep(0.2)
        else:
            raise AssertionError("the worker made no reconciliation schedule")
        assert description.schedule.spec.intervals[0].every == timedelta(minutes=45)
        action = description.schedule.action
        assert action.workflow == "Reconciliation" and action.task_queue == task_queue  # type: ignore[attr-defined]

        await handle.trigger()
        sessions = session_factory(engine)
        for _ in range(150):
            async with sessions() as session:
                run = await session.scalar(select(ReconciliationRun))
            if run is not None and run.status.value != "RUNNING":
                break
            await asyncio.sleep(0.2)
        else:
            raise AssertionError("the scheduled run never finished")
        assert run.requested_by == "system:schedule" and run.status.value == "COMPLETED", run.errors
        assert run.workflow_id.startswith("reconciliation-scheduled")
        assert run.window_end - run.window_start == timedelta(minutes=90)
        assert run.summary == {"SUPPLIER_ORDER_REVOKED": 1}, placed.reference

        async with httpx.AsyncClient() as http:
            metrics = (await http.get(f"http://127.0.0.1:{settings.worker_metrics_port}/metrics")).text
        lines = metrics.splitlines()
        findings = [line for line in lines if line.startswith("ttelgo_reconciliation_findings")]
        assert any('kind="SUPPLIER_ORDER_REVOKED"' in ln and ln.endswith(" 1") for ln in findings), findings
        runs = [line for line in lines if line.startswith("ttelgo_reconciliation_runs")]
        assert any('status="COMPLETED"' in line and line.endswith(" 1") for line in runs), runs

        # A restart with other settings updates the existing schedule instead of failing.
        await worker.ensure_reconciliation_schedule(
            client, settings.model_copy(update={"reconciliation_minutes": 30})
        )
        described = await handle.describe()
        assert described.schedule.spec.intervals[0].every == timedelta(minutes=30)
        # Missed runs are skipped, not caught up (a restored backup must not be reconciled at once).
        assert described.schedule.policy.catchup_window == timedelta(minutes=5)
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)
        for schedule in worker.SCHEDULE_IDS:  # all the worker made on the shared server
            with contextlib.suppress(Exception):
                await client.get_schedule_handle(schedule).delete()
        await engine.dispose()
