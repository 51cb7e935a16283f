"""Apply one supplier usage callback to our eSIM record; started by the callback endpoint."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.contracts import APPLY_USAGE, UsageEvent, UsageOutcome


def usage_workflow_id(event_id: str) -> str:
    return f"esim-usage-{event_id}"


@workflow.defn(name="EsimUsage")
class EsimUsageWorkflow:
    @workflow.run
    async def run(self, event: UsageEvent) -> UsageOutcome:
        return await workflow.execute_activity(
            APPLY_USAGE, event, result_type=UsageOutcome, start_to_close_timeout=timedelta(seconds=30)
        )
