"""Taking a card payment inside a workflow: open a PaymentIntent, then follow Stripe's events for it until
it succeeds, or the window closes, or the buyer cancels. Shared by the order and top-up workflows.

Events arrive as signals carrying the Stripe event id: a redelivery is recognised and ignored, and the
payment only moves forward (`succeeded` and `canceled` are final), so order of arrival does not matter.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from datetime import timedelta
from enum import StrEnum

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.contracts import (
        CANCEL_PAYMENT,
        INTENT_MISSING,
        OPEN_PAYMENT,
        RECORD_PAYMENT,
        PaymentRequest,
        PaymentState,
    )
    from ttelgo.models.orders import PaymentStatus
    from ttelgo.payments import IntentRef, PaymentEvent

STRIPE_CALL = {
    "start_to_close_timeout": timedelta(seconds=30),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(seconds=30)),
}
LOCAL_STEP = {"start_to_close_timeout": timedelta(seconds=30)}
STRIPE_STATUS = {
    "payment_intent.processing": PaymentStatus.PROCESSING,
    "payment_intent.succeeded": PaymentStatus.SUCCEEDED,
    "payment_intent.payment_failed": PaymentStatus.FAILED,
    "payment_intent.canceled": PaymentStatus.CANCELED,
}
FINAL = (PaymentStatus.SUCCEEDED, PaymentStatus.CANCELED)
SEEN_EVENTS_KEPT = 200
PROCESSING_RECHECK = timedelta(minutes=10)


class Settlement(StrEnum):
    PAID = "PAID"
    CANCELED = "CANCELED"  # the buyer (or Stripe) canceled
    EXPIRED = "EXPIRED"  # the payment window closed first


class CardPayment:
    def __init__(self, request: PaymentRequest, window: timedelta) -> None:
        self.request = request
        self.window = window
        self.intent_id: str | None = None
        self.status = PaymentStatus.REQUIRES_PAYMENT
        self.failure: str | None = None
        self.cancel_requested = False
        self._changes = 0  # events applied so far; `settle` reacts to each
        self._handled = 0
        self._seen: list[str] = []
        self._latest_event_at = 0  # Stripe's `created` of the newest event applied

    async def open(self) -> IntentRef:
        intent: IntentRef = await workflow.execute_activity(
            OPEN_PAYMENT, self.request, result_type=IntentRef, **STRIPE_CALL
        )
        self.intent_id = intent.id
        return intent

    def on_event(self, event: PaymentEvent) -> None:
        """Signal body: apply the event once, only if it is about our intent and newer than the last one
        applied (a late `payment_failed` cannot undo a later `processing`), and never after a final one."""
        if event.event_id in self._seen or event.intent_id != self.intent_id or self.status in FINAL:
            return
        self._seen = [*self._seen[-SEEN_EVENTS_KEPT:], event.event_id]
        status = STRIPE_STATUS.get(event.type)
        if status is None or event.created < self._latest_event_at:
            return
        self._latest_event_at = event.created
        if status is PaymentStatus.SUCCEEDED and (
            event.amount_minor != self.request.amount_minor or event.currency != self.request.currency
        ):
            workflow.logger.error("succeeded event %s does not match the amount asked for", event.event_id)
        self.status, self.failure = status, event.failure_message
        self._changes += 1

    def cancel(self) -> None:
        self.cancel_requested = True

    async def settle(self, on_declined: Callable[[str | None], Awaitable[None]]) -> Settlement:
        """Waits for the outcome inside the window; a decline is reported and the wait goes on."""
        deadline = workflow.now() + self.window
        while self.status not in FINAL and not self.cancel_requested:
            try:
                await workflow.wait_condition(
                    lambda: self._changes != self._handled or self.cancel_requested,
                    timeout=max(deadline - workflow.now(), timedelta(0)),
                )
            except TimeoutError:
                break
            self._handled = self._changes
            if self.status not in FINAL:
                await self._record(self.status)
                if self.status is PaymentStatus.FAILED:
                    await on_declined(self.failure)
        if self.status is PaymentStatus.SUCCEEDED:
            await self._record(PaymentStatus.SUCCEEDED)
            return Settlement.PAID
        by_buyer = self.cancel_requested or self.status is PaymentStatus.CANCELED
        return await self._close(Settlement.CANCELED if by_buyer else Settlement.EXPIRED)

    async def _close(self, reason: Settlement) -> Settlement:
        """Cancels the intent at Stripe; one that got paid meanwhile counts as paid after all. Money in
        flight (`processing`) cannot be canceled: its outcome decides, by event or by asking again."""
        while True:
            status = await self._cancel_at_stripe()
            if status != "processing":
                break
            await self._next_change(PROCESSING_RECHECK)
        if status == "succeeded":
            self.status = PaymentStatus.SUCCEEDED
            await self._record(PaymentStatus.SUCCEEDED)
            return Settlement.PAID
        self.status = PaymentStatus.CANCELED
        await self._record(PaymentStatus.CANCELED)
        return reason

    async def _cancel_at_stripe(self) -> str:
        """The intent's Stripe status after the cancel. An intent Stripe no longer has cannot be paid:
        as good as canceled (a workflow must not fail, leaving its order unsettled, over it)."""
        try:
            intent: IntentRef = await workflow.execute_activity(
                CANCEL_PAYMENT, self.intent_id, result_type=IntentRef, **STRIPE_CALL
            )
        except ActivityError as failure:
            if isinstance(failure.cause, ApplicationError) and failure.cause.type == INTENT_MISSING:
                return "canceled"
            raise
        return intent.status

    async def _next_change(self, at_most: timedelta) -> None:
        seen = self._changes
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(lambda: self._changes != seen, timeout=at_most)

    async def _record(self, status: PaymentStatus) -> None:
        assert self.intent_id is not None
        state = PaymentState(intent_id=self.intent_id, status=status, failure_message=self.failure)
        await workflow.execute_local_activity(RECORD_PAYMENT, state, **LOCAL_STEP)
