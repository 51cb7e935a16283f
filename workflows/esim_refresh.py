"""A read of one eSIM from eSIM Go (`esim-refresh-{eSIM row id}`: an ICCID is personal data, and a workflow
id is not encoded), started by the API when its stored copy is older than ESIM_FRESHNESS_SECONDS. Readers
that find one running attach to it, so a burst of reads of one eSIM costs one supplier read; the activity runs on the rate-limited supplier queue. A supplier fault is
retried for a few seconds and then given up: the reader answers the stored copy with its age."""

from __future__ import annotations

import uuid
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.contracts import REFRESH_ESIM, RefreshEsim, RefreshOutcome
    from workflows.esim_alerts import send_alert

RETRIES = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=5))


def refresh_workflow_id(esim_id: uuid.UUID) -> str:
    return f"esim-refresh-{esim_id}"


@workflow.defn(name="EsimRefresh")
class EsimRefreshWorkflow:
    @workflow.run
    async def run(self, request: RefreshEsim) -> RefreshOutcome:
        try:
            outcome = await workflow.execute_activity(
                REFRESH_ESIM,
                request,
                result_type=RefreshOutcome,
                task_queue=request.supplier_task_queue,
                start_to_close_timeout=timedelta(seconds=15),
                schedule_to_close_timeout=timedelta(seconds=request.budget_s),
                retry_policy=RETRIES,
            )
        except ActivityError as failure:
            return RefreshOutcome(refreshed=False, detail=str(failure.cause or failure))
        for alert in outcome.alerts:  # usage this read saw first crossed them
            await send_alert(alert)
        return outcome
