"""Card payments: open, cancel and refund PaymentIntents at Stripe, and keep the payments row in step.

Stripe's idempotency keys come from the workflow id, so a retried activity meets its own earlier result.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contracts import (
    CANCEL_PAYMENT,
    CREATE_CARD_REFUND,
    INTENT_MISSING,
    OPEN_PAYMENT,
    READ_CARD_REFUND,
    RECORD_PAYMENT,
    REFUND_PAYMENT,
    CardRefund,
    PaymentRequest,
    PaymentState,
    RefundRequest,
)
from ttelgo.models import Order, Payment, PaymentStatus
from ttelgo.payments import IntentMissing, IntentRef, PaymentDeclined, RefundRef, StripeGateway

# A status never goes back to one of these once it has left them.
FINAL = (PaymentStatus.SUCCEEDED, PaymentStatus.CANCELED, PaymentStatus.REFUNDED)


def _for_history(intent: IntentRef) -> IntentRef:
    """An activity result is stored in the workflow history: the client secret never goes there."""
    return intent.model_copy(update={"client_secret": None})


def _permanent(exc: PaymentDeclined) -> ApplicationError:
    return ApplicationError(exc.message, exc.code, type="PAYMENT_FAILED", non_retryable=True)


class PaymentActivities:
    def __init__(self, stripe: StripeGateway, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.stripe = stripe
        self.sessions = sessions

    @activity.defn(name=OPEN_PAYMENT)
    async def open(self, request: PaymentRequest) -> IntentRef:
        try:
            intent = await self.stripe.create_intent(
                amount_minor=request.amount_minor,
                currency=request.currency,
                metadata=request.metadata,
                idempotency_key=f"{request.workflow_id}:intent",
            )
        except PaymentDeclined as exc:
            raise _permanent(exc) from exc
        row = {
            "id": request.payment_id,
            "purpose": request.purpose,
            "order_id": request.order_id,
            "vendor_id": request.vendor_id,
            "provider_payment_id": intent.id,
            "amount_minor": request.amount_minor,
            "currency": request.currency,
            "workflow_id": request.workflow_id,
        }
        async with self.sessions() as session, session.begin():
            await session.execute(
                insert(Payment)
                .values(row)
                .on_conflict_do_update(index_elements=["id"], set_={"provider_payment_id": intent.id})
            )
        return _for_history(intent)

    @activity.defn(name=CANCEL_PAYMENT)
    async def cancel(self, intent_id: str) -> IntentRef:
        try:
            return _for_history(await self.stripe.cancel_intent(intent_id))
        except IntentMissing as exc:
            raise ApplicationError(exc.message, type=INTENT_MISSING, non_retryable=True) from exc
        except PaymentDeclined as exc:
            raise _permanent(exc) from exc

    @activity.defn(name=RECORD_PAYMENT)
    async def record(self, state: PaymentState) -> None:
        values: dict[str, object] = {"status": state.status}
        if state.failure_message:
            values["failure_message"] = state.failure_message[:1000]
        if state.status is PaymentStatus.SUCCEEDED:
            values["succeeded_at"] = datetime.now(UTC)
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(Payment)
                .where(Payment.provider_payment_id == state.intent_id, Payment.status.not_in(FINAL))
                .values(**values)
            )

    @activity.defn(name=REFUND_PAYMENT)
    async def refund(self, request: RefundRequest) -> RefundRef:
        """A full refund as compensation; the order and its payment record how much went back."""
        payment = request.payment
        try:
            refund = await self.stripe.refund(
                intent_id=request.intent_id,
                amount_minor=None,
                metadata=payment.metadata | {"reason": request.reason[:200]},
                idempotency_key=f"{payment.workflow_id}:refund",
            )
        except PaymentDeclined as exc:
            raise _permanent(exc) from exc
        if refund.status in ("failed", "canceled"):
            raise ApplicationError(
                f"Stripe refund {refund.id} {refund.status}", type="RefundFailed", non_retryable=True
            )
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(Payment)
                .where(Payment.provider_payment_id == request.intent_id)
                .values(status=PaymentStatus.REFUNDED, refunded_minor=refund.amount_minor)
            )
            if payment.order_id:
                await session.execute(
                    update(Order)
                    .where(Order.id == payment.order_id)
                    .values(refunded_minor=refund.amount_minor)
                )
        return refund

    @activity.defn(name=CREATE_CARD_REFUND)
    async def create_refund(self, request: CardRefund) -> RefundRef:
        """A (partial) refund for the refund workflow, which records the outcome once it is final."""
        try:
            return await self.stripe.refund(
                intent_id=request.intent_id,
                amount_minor=request.amount_minor,
                metadata=request.payment.metadata | {"reason": request.reason[:200]},
                idempotency_key=request.idempotency_key,
            )
        except PaymentDeclined as exc:
            raise _permanent(exc) from exc

    @activity.defn(name=READ_CARD_REFUND)
    async def read_refund(self, refund_id: str) -> RefundRef:
        return await self.stripe.retrieve_refund(refund_id)
