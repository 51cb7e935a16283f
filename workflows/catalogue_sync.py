"""Copy eSIM Go's catalogue into our database; a Temporal Schedule runs this every few minutes."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.contracts import SYNC_CATALOGUE, CatalogueSyncResult

SCHEDULE_ID = "catalogue-sync"
WORKFLOW_ID = "catalogue-sync"


@workflow.defn(name="CatalogueSync")
class CatalogueSyncWorkflow:
    @workflow.run
    async def run(self) -> CatalogueSyncResult:
        # A supplier outage just means an older copy keeps being served; the next run catches up.
        return await workflow.execute_activity(
            SYNC_CATALOGUE,
            result_type=CatalogueSyncResult,
            start_to_close_timeout=timedelta(minutes=5),
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=2), maximum_attempts=5),
        )
