"""The Temporal worker process: `python worker.py` (the dev stack and docker-compose run it)."""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
)
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker

from activities.registry import build_activities
from ttelgo import temporal
from ttelgo.observability import configure_logging
from ttelgo.settings import Settings, get_settings
from workflows.catalogue_sync import SCHEDULE_ID, WORKFLOW_ID, CatalogueSyncWorkflow
from workflows.registry import WORKFLOWS

log = logging.getLogger("ttelgo.worker")


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


async def run(settings: Settings, stop: asyncio.Event) -> None:
    runtime = Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(bind_address=f"127.0.0.1:{settings.worker_metrics_port}")
        )
    )
    client = await temporal.connect(settings, runtime=runtime)
    activities, close_activities = await build_activities(settings)
    worker = Worker(
        client,
        task_queue=settings.temporal_task_queue,
        workflows=WORKFLOWS,
        activities=activities,
        # In-flight activities get this long to finish on SIGTERM; Temporal retries the rest elsewhere.
        graceful_shutdown_timeout=timedelta(seconds=10),
    )
    try:
        async with worker:
            await ensure_catalogue_schedule(client, settings)
            log.info(
                "worker polling task queue %r on %s", settings.temporal_task_queue, settings.temporal_address
            )
            await stop.wait()
            log.info("shutting down: finishing in-flight tasks")
    finally:
        await close_activities()


def main() -> None:
    settings = get_settings().resolved()
    configure_logging(settings.log_level)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run(settings, stop)

    asyncio.run(serve())


if __name__ == "__main__":
    main()
