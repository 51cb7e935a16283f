"""The Temporal worker process: `python worker.py` (the dev stack and docker-compose run it)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import replace as replace_dataclass
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker

from activities.contracts import ReconciliationInput, SupplierBalanceCheck
from activities.data_errors import BadDataInterceptor
from activities.registry import ActivitySet, build_activities
from ttelgo import business_metrics, temporal
from ttelgo.observability import configure_logging
from ttelgo.settings import Settings, get_settings
from workflows.catalogue_sync import SCHEDULE_ID, WORKFLOW_ID, CatalogueSyncWorkflow
from workflows.housekeeping import SCHEDULE_ID as HOUSEKEEPING_SCHEDULE_ID
from workflows.housekeeping import WORKFLOW_ID as HOUSEKEEPING_WORKFLOW_ID
from workflows.housekeeping import HousekeepingInput, HousekeepingWorkflow
from workflows.invoicing import SCHEDULE_ID as INVOICING_SCHEDULE_ID
from workflows.invoicing import WORKFLOW_ID as INVOICING_WORKFLOW_ID
from workflows.invoicing import InvoicingInput, InvoicingWorkflow
from workflows.reconciliation import SCHEDULE_ID as RECONCILIATION_SCHEDULE_ID
from workflows.reconciliation import WORKFLOW_ID as RECONCILIATION_WORKFLOW_ID
from workflows.reconciliation import ReconciliationWorkflow
from workflows.registry import WORKFLOWS
from workflows.supplier_balance import SCHEDULE_ID as SUPPLIER_BALANCE_SCHEDULE_ID
from workflows.supplier_balance import WORKFLOW_ID as SUPPLIER_BALANCE_WORKFLOW_ID
from workflows.supplier_balance import SupplierBalanceInput, SupplierBalanceWorkflow

log = logging.getLogger("ttelgo.worker")
INTERCEPTORS = [BadDataInterceptor()]


async def ensure_catalogue_schedule(client: Client, settings: Settings) -> None:
    """The catalogue copy runs every few minutes and once now, at start-up, whether or not it existed."""
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            CatalogueSyncWorkflow.run, id=WORKFLOW_ID, task_queue=settings.temporal_task_queue
        ),
        spec=ScheduleSpec(
            intervals=[ScheduleIntervalSpec(every=timedelta(minutes=settings.catalogue_sync_minutes))]
        ),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )
    try:
        await client.create_schedule(SCHEDULE_ID, schedule, trigger_immediately=True)
    except ScheduleAlreadyRunningError:
        await client.get_schedule_handle(SCHEDULE_ID).trigger(overlap=ScheduleOverlapPolicy.SKIP)


async def _put_schedule(client: Client, schedule_id: str, schedule: Schedule) -> None:
    """Creates the schedule, or gives an existing one today's settings (interval, inputs, task queues),
    keeping its state: one an operator paused stays paused through deploys and restarts."""
    try:
        await client.create_schedule(schedule_id, schedule)
    except ScheduleAlreadyRunningError:

        def replace(existing: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(
                schedule=replace_dataclass(schedule, state=existing.description.schedule.state)
            )

        await client.get_schedule_handle(schedule_id).update(replace)


async def ensure_reconciliation_schedule(client: Client, settings: Settings) -> None:
    """Reconciliation every RECONCILIATION_MINUTES over the last RECONCILIATION_WINDOW_MINUTES."""
    request = ReconciliationInput(
        window_minutes=settings.reconciliation_window_minutes,
        grace_minutes=settings.reconciliation_grace_minutes,
        supplier_task_queue=settings.esimgo_task_queue,
    )
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            ReconciliationWorkflow.run,
            request,
            id=RECONCILIATION_WORKFLOW_ID,
            task_queue=settings.temporal_task_queue,
        ),
        spec=ScheduleSpec(
            intervals=[ScheduleIntervalSpec(every=timedelta(minutes=settings.reconciliation_minutes))]
        ),
        # Runs missed while Temporal was down are skipped, not caught up: after a restore from backup a
        # caught-up run would act on the lost period before an operator can pause it (docs/RUNBOOK.md).
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=timedelta(minutes=5)),
    )
    await _put_schedule(client, RECONCILIATION_SCHEDULE_ID, schedule)


async def ensure_housekeeping_schedule(client: Client, settings: Settings) -> None:
    """Housekeeping every hour (a run deletes at most MAX_BATCHES_PER_CHORE batches a chore, so busy tables
    keep up), with today's retention settings."""
    request = HousekeepingInput(
        api_usage_days=settings.api_usage_retention_days,
        webhook_event_days=settings.webhook_event_retention_days,
        notification_days=settings.notification_retention_days,
        login_failure_window_hours=settings.login_failure_window_hours,
    )
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            HousekeepingWorkflow.run,
            request,
            id=HOUSEKEEPING_WORKFLOW_ID,
            task_queue=settings.temporal_task_queue,
            execution_timeout=timedelta(hours=1),  # a database away for longer: the next run goes on
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(hours=1))]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )
    await _put_schedule(client, HOUSEKEEPING_SCHEDULE_ID, schedule)


async def ensure_supplier_balance_schedule(client: Client, settings: Settings) -> None:
    """The eSIM Go balance read every SUPPLIER_BALANCE_MINUTES, against today's low-balance threshold."""
    request = SupplierBalanceInput(
        check=SupplierBalanceCheck(low_balance_minor=settings.supplier_low_balance_minor),
        supplier_task_queue=settings.esimgo_task_queue,
    )
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            SupplierBalanceWorkflow.run,
            request,
            id=SUPPLIER_BALANCE_WORKFLOW_ID,
            task_queue=settings.temporal_task_queue,
            execution_timeout=timedelta(minutes=10),  # no worker to run it: the next run reads instead
        ),
        spec=ScheduleSpec(
            intervals=[ScheduleIntervalSpec(every=timedelta(minutes=settings.supplier_balance_minutes))]
        ),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )
    await _put_schedule(client, SUPPLIER_BALANCE_SCHEDULE_ID, schedule)


async def ensure_invoicing_schedule(client: Client, settings: Settings) -> None:
    """POSTPAID invoices at 02:00 UTC on the 1st of each month, for the month before (the run works the
    month out from its start time, so a caught-up run still invoices the right month)."""
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            InvoicingWorkflow.run,
            InvoicingInput(),
            id=INVOICING_WORKFLOW_ID,
            task_queue=settings.temporal_task_queue,
        ),
        spec=ScheduleSpec(
            calendars=[ScheduleCalendarSpec(day_of_month=[ScheduleRange(1)], hour=[ScheduleRange(2)])]
        ),
        # Invoices are idempotent, so a run missed while Temporal was down is safe to catch up.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=timedelta(days=7)),
    )
    await _put_schedule(client, INVOICING_SCHEDULE_ID, schedule)


SCHEDULE_IDS = (
    SCHEDULE_ID,
    RECONCILIATION_SCHEDULE_ID,
    HOUSEKEEPING_SCHEDULE_ID,
    SUPPLIER_BALANCE_SCHEDULE_ID,
    INVOICING_SCHEDULE_ID,
)
"""Every schedule the project runs, in the order `ensure_schedules` puts them."""


async def ensure_schedules(client: Client, settings: Settings) -> list[str]:
    """Every schedule the project runs, with today's settings: at worker start-up and in `ttelgo temporal
    setup`. Returns their ids."""
    await ensure_catalogue_schedule(client, settings)
    await ensure_reconciliation_schedule(client, settings)
    await ensure_housekeeping_schedule(client, settings)
    await ensure_supplier_balance_schedule(client, settings)
    await ensure_invoicing_schedule(client, settings)
    return list(SCHEDULE_IDS)


def build_workers(client: Client, settings: Settings, activities: ActivitySet) -> list[Worker]:
    """The main worker (workflows and local side effects) and the rate-limited eSIM Go provisioning worker."""
    # In-flight activities get this long to finish on SIGTERM; Temporal retries the rest elsewhere.
    grace = timedelta(seconds=10)
    supplier_rate = settings.esimgo_max_requests_per_second or None
    return [
        Worker(
            client,
            task_queue=settings.temporal_task_queue,
            workflows=WORKFLOWS,
            activities=activities.main,
            interceptors=INTERCEPTORS,
            graceful_shutdown_timeout=grace,
        ),
        Worker(
            client,
            task_queue=settings.esimgo_task_queue,
            activities=activities.supplier,
            interceptors=INTERCEPTORS,
            max_task_queue_activities_per_second=supplier_rate,
            graceful_shutdown_timeout=grace,
        ),
    ]


async def run(settings: Settings, stop: asyncio.Event) -> None:
    runtime = Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(
                bind_address=f"{settings.worker_metrics_host}:{settings.worker_metrics_port}",
                counters_total_suffix=True,
                histogram_bucket_overrides=business_metrics.HISTOGRAM_BUCKETS,
            )
        )
    )
    client = await temporal.connect(settings, runtime=runtime)
    activities = await build_activities(settings)
    try:
        async with contextlib.AsyncExitStack() as stack:
            for worker in build_workers(client, settings, activities):
                await stack.enter_async_context(worker)
            await ensure_schedules(client, settings)
            log.info(
                "worker polling %r and %r on %s",
                settings.temporal_task_queue,
                settings.esimgo_task_queue,
                settings.temporal_address,
            )
            await stop.wait()
            log.info("shutting down: finishing in-flight tasks")
    finally:
        await activities.close()


def main() -> None:
    settings = get_settings().resolved()
    configure_logging(settings.log_level, settings.log_format)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run(settings, stop)

    asyncio.run(serve())


if __name__ == "__main__":
    main()
