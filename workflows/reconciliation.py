"""Reconciliation (`reconciliation-{run id}`, and the `reconciliation` Schedule's runs): what eSIM Go and
Stripe hold, compared with our records over a time window.

1. record the run (RUNNING) with its window;
2. eSIM Go orders no order of ours claims: each is adopted by an order still waiting for it, or its
   unused bundles are revoked to our supplier balance (on the rate-limited supplier task queue);
3. Stripe: succeeded payments we have not recorded, refunds made outside TTelGo, disputes;
4. orders not finished whose workflow is closed or missing;
5. close the run: COMPLETED, or FAILED naming the checks that gave up (the others still ran).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.contracts import (
        CLOSE_RECONCILIATION,
        FIND_STUCK_ORDERS,
        FIND_UNCLAIMED_SUPPLIER_ORDERS,
        OPEN_RECONCILIATION,
        RECONCILE_STRIPE,
        RESOLVE_SUPPLIER_ORDER,
        CheckOutcome,
        ReconciliationEnd,
        ReconciliationInput,
        ReconciliationWindow,
        SupplierOrderCase,
        UnclaimedSupplierOrder,
    )

SCHEDULE_ID = "reconciliation"
WORKFLOW_ID = "reconciliation-scheduled"  # the Schedule appends the start time

LOCAL_STEP = {"start_to_close_timeout": timedelta(seconds=30)}
# A check rides out an outage of its counterpart for this long, then the run reports it as failed; the
# next run looks again.
CHECK = {
    "start_to_close_timeout": timedelta(minutes=5),
    "schedule_to_close_timeout": timedelta(minutes=30),
    "heartbeat_timeout": timedelta(minutes=1),
    "retry_policy": RetryPolicy(initial_interval=timedelta(seconds=2), maximum_interval=timedelta(minutes=1)),
}


def reconciliation_workflow_id(run_id: object) -> str:
    return f"reconciliation-{run_id}"


@workflow.defn(name="Reconciliation")
class ReconciliationWorkflow:
    @workflow.run
    async def run(self, request: ReconciliationInput) -> CheckOutcome:
        now = workflow.now()
        window = ReconciliationWindow(
            run_id=request.run_id or workflow.uuid4(),
            workflow_id=workflow.info().workflow_id,
            requested_by=request.requested_by,
            since=now - timedelta(minutes=request.window_minutes),
            settled_before=now - timedelta(minutes=request.grace_minutes),
        )
        await workflow.execute_local_activity(OPEN_RECONCILIATION, window, **LOCAL_STEP)
        checks = (
            ("supplier orders", lambda: self._supplier_orders(window, request.supplier_task_queue)),
            ("stripe", lambda: self._check(RECONCILE_STRIPE, window)),
            ("stuck orders", lambda: self._check(FIND_STUCK_ORDERS, window)),
        )
        outcome, errors = CheckOutcome(), []
        for name, check in checks:  # one after another; a check that gives up does not stop the others
            try:
                found, failed = await check()
            except ActivityError as failure:
                found, failed = CheckOutcome(), [f"{name}: {_cause(failure)}"]
            outcome, errors = outcome.merge(found), errors + failed
        end = ReconciliationEnd(run_id=window.run_id, outcome=outcome, errors=errors)
        await workflow.execute_local_activity(CLOSE_RECONCILIATION, end, **LOCAL_STEP)
        return outcome

    async def _supplier_orders(
        self, window: ReconciliationWindow, task_queue: str
    ) -> tuple[CheckOutcome, list[str]]:
        unclaimed = await workflow.execute_activity(
            FIND_UNCLAIMED_SUPPLIER_ORDERS,
            window,
            task_queue=task_queue,
            result_type=list[UnclaimedSupplierOrder],
            **CHECK,
        )
        outcome, errors = CheckOutcome(), []
        for order in unclaimed:  # one at a time: the supplier queue's rate limit is shared with orders
            try:
                outcome = outcome.merge(
                    await workflow.execute_activity(
                        RESOLVE_SUPPLIER_ORDER,
                        SupplierOrderCase(window=window, order=order),
                        task_queue=task_queue,
                        result_type=CheckOutcome,
                        **CHECK,
                    )
                )
            except ActivityError as failure:
                errors.append(f"supplier order {order.reference}: {_cause(failure)}")
        return outcome, errors

    async def _check(self, name: str, window: ReconciliationWindow) -> tuple[CheckOutcome, list[str]]:
        found = await workflow.execute_activity(name, window, result_type=CheckOutcome, **CHECK)
        return found, []


def _cause(failure: ActivityError) -> str:
    cause = failure.cause or failure
    return str(cause)[:300] or type(cause).__name__
