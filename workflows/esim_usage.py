"""Apply one supplier usage callback to our eSIM record, then send the usage alerts it crossed; started by
the callback endpoint."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.contracts import APPLY_USAGE, USAGE_ALERTS_PATCH, UsageEvent, UsageOutcome
    from workflows.esim_alerts import send_alert


def usage_workflow_id(event_id: str) -> str:
    return f"esim-usage-{event_id}"


@workflow.defn(name="EsimUsage")
class EsimUsageWorkflow:
    @workflow.run
    async def run(self, event: UsageEvent) -> UsageOutcome:
        outcome = await workflow.execute_activity(
            APPLY_USAGE, event, result_type=UsageOutcome, start_to_close_timeout=timedelta(seconds=30)
        )
        # The alerts this run claimed (crossing 80 % / 100 %); histories recorded before alerts send none.
        if outcome.alerts and workflow.patched(USAGE_ALERTS_PATCH):
            for alert in outcome.alerts:
                await send_alert(alert)
        return outcome
