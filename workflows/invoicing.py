"""Invoicing: each POSTPAID vendor's invoice for one month. The Temporal Schedule `invoicing` runs it on the
1st of each month for the month before; an admin runs it on demand for one vendor and month.

One activity per vendor invoice; each is idempotent (unique per vendor and month), so a run retried,
repeated or cut short by a crashed worker never invoices a vendor twice for the same month. The history
holds vendor ids, invoice numbers and totals only.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.contracts import (
        ISSUE_INVOICE,
        LIST_INVOICEABLE,
        InvoicePeriod,
        IssuedInvoice,
        IssueInvoice,
    )
    from ttelgo.invoicing import month_before
    from ttelgo.months import MONTH_PATTERN

SCHEDULE_ID = "invoicing"
WORKFLOW_ID = "invoicing"
RETRIES = RetryPolicy(initial_interval=timedelta(seconds=5), maximum_interval=timedelta(minutes=5))
# A vendor's invoice takes well under a second, a large vendor's month longer: each step may take 2 minutes,
# and heartbeats while it runs, so a worker that died mid-step is given up on after 10 s (replay ignores
# activity options: older histories still replay).
STEP = {
    "start_to_close_timeout": timedelta(minutes=2),
    "heartbeat_timeout": timedelta(seconds=10),
    "retry_policy": RETRIES,
}


def on_demand_workflow_id(vendor_id: uuid.UUID, period: str) -> str:
    return f"invoicing-{vendor_id}-{period}"


class InvoicingInput(BaseModel):
    """`period` None: the month before the run started (scheduled runs); `vendor_id` None: every vendor."""

    period: str | None = Field(default=None, pattern=MONTH_PATTERN)
    vendor_id: uuid.UUID | None = None


class InvoicingResult(BaseModel):
    period: str
    invoices: list[IssuedInvoice]

    @property
    def created(self) -> list[IssuedInvoice]:
        return [invoice for invoice in self.invoices if invoice.created]


@workflow.defn(name="Invoicing")
class InvoicingWorkflow:
    @workflow.run
    async def run(self, request: InvoicingInput) -> InvoicingResult:
        period = request.period or month_before(workflow.now())
        vendor_ids: list[str] = await workflow.execute_activity(
            LIST_INVOICEABLE,
            InvoicePeriod(period=period, vendor_id=request.vendor_id),
            result_type=list[str],
            **STEP,
        )
        result = InvoicingResult(period=period, invoices=[])
        for vendor_id in vendor_ids:
            issued = await workflow.execute_activity(
                ISSUE_INVOICE,
                IssueInvoice(vendor_id=uuid.UUID(vendor_id), period=period),
                result_type=IssuedInvoice,
                **STEP,
            )
            result.invoices.append(issued)
        return result
