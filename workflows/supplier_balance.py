"""Read the eSIM Go balance (the activity puts it on the metrics and warns when it is low); the Temporal
Schedule `supplier-balance` runs this every SUPPLIER_BALANCE_MINUTES."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.contracts import READ_SUPPLIER_BALANCE, SupplierBalance, SupplierBalanceCheck

SCHEDULE_ID = "supplier-balance"
WORKFLOW_ID = "supplier-balance"


class SupplierBalanceInput(BaseModel):
    check: SupplierBalanceCheck
    supplier_task_queue: str  # the rate-limited eSIM Go queue: this read shares its budget


@workflow.defn(name="SupplierBalance")
class SupplierBalanceWorkflow:
    @workflow.run
    async def run(self, request: SupplierBalanceInput) -> SupplierBalance:
        # A supplier outage just leaves the last reading in place; the next run reads again.
        return await workflow.execute_activity(
            READ_SUPPLIER_BALANCE,
            request.check,
            result_type=SupplierBalance,
            task_queue=request.supplier_task_queue,
            start_to_close_timeout=timedelta(seconds=30),
            schedule_to_close_timeout=timedelta(minutes=5),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(seconds=2), maximum_interval=timedelta(minutes=1)
            ),
        )
