"""The wallet top-up workflow (`topup-{id}`): a card payment that, once it succeeds, credits the vendor's
wallet exactly once → COMPLETED; a closed window or a cancellation → EXPIRED or FAILED."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum

from pydantic import BaseModel
from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.contracts import CREDIT_TOPUP, NOTIFICATION_PATCH, MailTemplate, Notify, TopupInput
    from ttelgo.payments import PaymentEvent
    from workflows.notification import notify
    from workflows.order import failure_reason
    from workflows.payment import LOCAL_STEP, CardPayment, Settlement
    from workflows.webhook_delivery import emit_webhook


def topup_workflow_id(topup_id: object) -> str:
    return f"topup-{topup_id}"


class TopupStatus(StrEnum):
    CREATED = "CREATED"
    PAYMENT_PENDING = "PAYMENT_PENDING"
    PAYMENT_FAILED = "PAYMENT_FAILED"  # declined; the vendor may try another card inside the window
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"


class TopupProgress(BaseModel):
    status: TopupStatus
    payment_intent_id: str | None = None
    failure_reason: str | None = None


@workflow.defn(name="Topup")
class TopupWorkflow:
    @workflow.init
    def __init__(self, topup: TopupInput) -> None:
        self._payment = CardPayment(topup.payment(), timedelta(seconds=topup.payment_window_s))
        self._progress = TopupProgress(status=TopupStatus.CREATED)

    @workflow.run
    async def run(self, topup: TopupInput) -> TopupProgress:
        try:
            self._progress.payment_intent_id = (await self._payment.open()).id
        except ActivityError as refused:  # Stripe said no to the intent itself
            reason = failure_reason(refused)[1]
            self._progress = TopupProgress(status=TopupStatus.FAILED, failure_reason=reason)
        else:
            await self._collect(topup)
        # The `opened` update may still be answering; let it finish before the run closes.
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._progress

    @workflow.update
    async def opened(self) -> TopupProgress:
        """Answers once the PaymentIntent exists (or could not be opened)."""
        await workflow.wait_condition(lambda: self._progress.status is not TopupStatus.CREATED)
        return self._progress

    @workflow.signal
    def payment_event(self, event: PaymentEvent) -> None:
        self._payment.on_event(event)

    @workflow.query
    def status(self) -> TopupProgress:
        return self._progress

    async def _collect(self, topup: TopupInput) -> None:
        self._progress.status = TopupStatus.PAYMENT_PENDING
        settlement = await self._payment.settle(self._declined)
        if settlement is Settlement.PAID:
            await workflow.execute_local_activity(CREDIT_TOPUP, topup, **LOCAL_STEP)
            self._progress.status, self._progress.failure_reason = TopupStatus.COMPLETED, None
            if workflow.patched(NOTIFICATION_PATCH):
                receipt = Notify(
                    template=MailTemplate.TOPUP_RECEIPT, topup_id=topup.topup_id, vendor_id=topup.vendor_id
                )
                await notify(receipt)
            await emit_webhook("topup.completed", topup_id=topup.topup_id)
        else:
            failed = settlement is Settlement.CANCELED
            self._progress.status = TopupStatus.FAILED if failed else TopupStatus.EXPIRED
            await emit_webhook("topup.failed", topup_id=topup.topup_id)

    async def _declined(self, reason: str | None) -> None:
        self._progress.status, self._progress.failure_reason = TopupStatus.PAYMENT_FAILED, reason
