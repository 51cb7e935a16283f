"""An order's purchase request handed to its supplier batcher (started if it is not running)."""

from __future__ import annotations

from temporalio import activity

from activities.contracts import (
    ASK_FOR_PURCHASE,
    PURCHASE_SIGNAL,
    SUPPLIER_BATCHER_WORKFLOW,
    BatcherState,
    PurchaseRequest,
    batcher_workflow_id,
)


@activity.defn(name=ASK_FOR_PURCHASE)
async def ask_for_purchase(request: PurchaseRequest) -> None:
    """Signal-with-start: a retry signals again, and the batcher ignores a request waiting or in flight."""
    queue = request.supplier_task_queue
    await activity.client().start_workflow(
        SUPPLIER_BATCHER_WORKFLOW,
        BatcherState(supplier_task_queue=queue),
        id=batcher_workflow_id(queue),
        task_queue=request.batcher_task_queue,
        start_signal=PURCHASE_SIGNAL,
        start_signal_args=[request],
    )
