"""The refund workflow (`refund-{id}`): money back on one order, at most what was captured.

Reserve the amount against the order (refused → the API answers 409) → wallet orders: credit the wallet
once; card orders: a Stripe refund, followed to its final state by webhook or by reading it back →
SUCCEEDED (order REFUNDED or PARTIALLY_REFUNDED) or FAILED (the reservation released) → when the order
is now fully refunded, revoke its bundles at eSIM Go (refunding our supplier balance where unused; a
top-up: its one bundle, the eSIM stays). A
card refund that fails after succeeding is reversed in our records while the workflow still watches it.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum

from pydantic import BaseModel
from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.contracts import (
        CREATE_CARD_REFUND,
        CREDIT_REFUND,
        CREDIT_SUPPLIER_COST,
        NOTIFICATION_PATCH,
        ORDER_REFUNDED_PATCH,
        READ_CARD_REFUND,
        RELEASE_SUPPLIER_ORDER,
        RESERVE_REFUND,
        REVOKE_BUNDLES,
        SETTLE_REFUND,
        SUPPLIER_COST_PATCH,
        TOPUP_REFUND_PATCH,
        CardRefund,
        MailTemplate,
        Notify,
        PaymentRequest,
        RefundInput,
        RefundPlan,
        RefundSettlement,
        RevokeBundle,
        SupplierCredit,
    )
    from ttelgo.models.orders import Channel, OrderKind, PaymentPurpose, RefundStatus
    from ttelgo.payments import PaymentEvent, RefundRef
    from workflows.notification import notify
    from workflows.order import SUPPLIER_RETRIES, failure_reason
    from workflows.payment import LOCAL_STEP, STRIPE_CALL
    from workflows.webhook_delivery import emit_webhook

FAILED_AT_STRIPE = ("failed", "canceled")
REVOCATION_BUDGET = timedelta(
    hours=6
)  # supplier outages are retried this long; reconciliation finds the rest


def refund_workflow_id(refund_id: object) -> str:
    return f"refund-{refund_id}"


class RefundState(StrEnum):
    REQUESTED = "REQUESTED"
    REJECTED = "REJECTED"
    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    REVERSED = "REVERSED"


class RefundProgress(BaseModel):
    state: RefundState
    amount_minor: int | None = None
    code: str | None = None
    detail: str | None = None


@workflow.defn(name="Refund")
class RefundWorkflow:
    @workflow.init
    def __init__(self, refund: RefundInput) -> None:
        self._progress = RefundProgress(state=RefundState.REQUESTED)
        self._stripe_refund: RefundRef | None = None
        self._seen: set[str] = set()

    @workflow.run
    async def run(self, refund: RefundInput) -> RefundProgress:
        self._refund = refund
        try:
            plan: RefundPlan = await workflow.execute_local_activity(
                RESERVE_REFUND, refund, result_type=RefundPlan, **LOCAL_STEP
            )
        except (ActivityError, ApplicationError) as refused:
            code, detail = failure_reason(refused)
            self._progress = RefundProgress(state=RefundState.REJECTED, code=code, detail=detail)
            return self._progress
        self._progress = RefundProgress(state=RefundState.PENDING, amount_minor=plan.amount_minor)
        to_revoke: list[RevokeBundle] = []
        try:
            if plan.channel is Channel.B2B:
                await workflow.execute_local_activity(CREDIT_REFUND, args=[refund, plan], **LOCAL_STEP)
                to_revoke = await self._settle(RefundStatus.SUCCEEDED)
            else:
                to_revoke = await self._refund_card(plan)
        except (ActivityError, ApplicationError) as failure:
            await self._settle(RefundStatus.FAILED, failure_reason(failure)[1])
        if plan.channel is Channel.B2B and self._progress.state in (
            RefundState.SUCCEEDED,
            RefundState.FAILED,
        ):
            succeeded = self._progress.state is RefundState.SUCCEEDED
            event = "refund.succeeded" if succeeded else "refund.failed"
            await emit_webhook(event, refund_id=refund.refund_id)
            # Bundles to revoke are answered only by the settlement that made the order fully refunded
            # (under the order's lock), so of refunds that race, one emits `order.refunded`.
            if succeeded and to_revoke and workflow.patched(ORDER_REFUNDED_PATCH):
                await emit_webhook("order.refunded", order_id=refund.order_id)
        if (
            self._progress.state is RefundState.SUCCEEDED
            and plan.channel is Channel.B2C
            and workflow.patched(NOTIFICATION_PATCH)
        ):
            await notify(Notify(template=MailTemplate.REFUND_SUCCEEDED, refund_id=refund.refund_id))
        if self._progress.state is RefundState.SUCCEEDED:
            # Money first, bundles after: a supplier problem never keeps a customer's money.
            await self._revoke(to_revoke, plan.kind)
            if plan.channel is Channel.B2C:
                await self._watch()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._progress

    async def _revoke(self, bundles: list[RevokeBundle], kind: OrderKind) -> None:
        if not bundles:
            return
        # A top-up's bundle sits on an eSIM an earlier order sold, beside bundles of the same name: it goes
        # back the way a failed top-up's does (counted against our records, so never twice), eSIM kept.
        topup = kind is OrderKind.TOPUP and workflow.patched(TOPUP_REFUND_PATCH)
        try:
            revoked: int = await workflow.execute_activity(
                RELEASE_SUPPLIER_ORDER if topup else REVOKE_BUNDLES,
                self._refund.order_id if topup else bundles,
                result_type=int,
                task_queue=self._refund.supplier_task_queue,
                start_to_close_timeout=timedelta(seconds=60),
                schedule_to_close_timeout=REVOCATION_BUDGET,
                retry_policy=SUPPLIER_RETRIES,
            )
        except ActivityError as failure:  # the refund stands; the order's timeline shows the failed step
            workflow.logger.warning("bundles not revoked: %s", failure_reason(failure)[1])
            return
        if workflow.patched(SUPPLIER_COST_PATCH):
            # Revoked with refundToBalance: eSIM Go gives their wholesale price back to our balance.
            credit = SupplierCredit(
                refund_workflow_id=self._refund.workflow_id, order_id=self._refund.order_id, revoked=revoked
            )
            await workflow.execute_local_activity(CREDIT_SUPPLIER_COST, credit, **LOCAL_STEP)

    async def _watch(self) -> None:
        """A bank may still return a card refund days later: then it is undone in our records."""
        try:
            await workflow.wait_condition(
                lambda: self._stripe_refund is not None and self._stripe_refund.status in FAILED_AT_STRIPE,
                timeout=timedelta(seconds=self._refund.watch_s),
            )
        except TimeoutError:
            return
        await self._settle(RefundStatus.REVERSED, "the refund failed after it had succeeded")

    async def _refund_card(self, plan: RefundPlan) -> list[RevokeBundle]:
        assert plan.intent_id is not None
        payment = PaymentRequest(
            payment_id=self._refund.order_id,
            workflow_id=self._refund.workflow_id,
            purpose=PaymentPurpose.ORDER,
            order_id=self._refund.order_id,
            amount_minor=plan.amount_minor,
            currency=plan.currency,
        )
        request = CardRefund(
            payment=payment,
            intent_id=plan.intent_id,
            amount_minor=plan.amount_minor,
            idempotency_key=f"{self._refund.workflow_id}:stripe",
            reason=self._refund.reason,
        )
        self._stripe_refund = await workflow.execute_activity(
            CREATE_CARD_REFUND, request, result_type=RefundRef, **STRIPE_CALL
        )
        while not self._refund_final():  # no event yet: read it back now and then
            try:
                await workflow.wait_condition(
                    self._refund_final,
                    timeout=timedelta(seconds=self._refund.poll_s),
                )
            except TimeoutError:
                self._stripe_refund = await workflow.execute_activity(
                    READ_CARD_REFUND, self._stripe_refund.id, result_type=RefundRef, **STRIPE_CALL
                )
        if self._stripe_refund.status in FAILED_AT_STRIPE:
            await self._settle(RefundStatus.FAILED, f"Stripe refund {self._stripe_refund.status}")
            return []
        return await self._settle(RefundStatus.SUCCEEDED)

    def _refund_final(self) -> bool:
        """Only `succeeded`, `failed` and `canceled` end the wait (`pending`, `requires_action` do not)."""
        return self._stripe_refund is not None and self._stripe_refund.status in (
            "succeeded",
            *FAILED_AT_STRIPE,
        )

    async def _settle(self, outcome: RefundStatus, reason: str | None = None) -> list[RevokeBundle]:
        """Records the outcome; answers the bundles to revoke once the order is fully refunded."""
        settlement = RefundSettlement(
            refund_id=self._refund.refund_id,
            outcome=outcome,
            provider_refund_id=self._stripe_refund.id if self._stripe_refund else None,
            failure_reason=reason,
        )
        to_revoke: list[RevokeBundle] = await workflow.execute_local_activity(
            SETTLE_REFUND, settlement, result_type=list[RevokeBundle], **LOCAL_STEP
        )
        self._progress = self._progress.model_copy(
            update={"state": RefundState(outcome.value), "detail": reason}
        )
        return to_revoke

    @workflow.signal
    def payment_event(self, event: PaymentEvent) -> None:
        """Stripe's refund events (`refund.updated`, `refund.failed`), each applied once."""
        ours = self._stripe_refund is not None and event.refund_id == self._stripe_refund.id
        if not ours or event.event_id in self._seen or event.status is None:
            return
        self._seen.add(event.event_id)
        assert self._stripe_refund is not None
        current, new = self._stripe_refund.status, event.status
        if current in FAILED_AT_STRIPE or (current == "succeeded" and new not in FAILED_AT_STRIPE):
            return  # failed is final; after success only a failure is news
        self._stripe_refund = self._stripe_refund.model_copy(update={"status": event.status})

    @workflow.update
    async def accepted(self) -> RefundProgress:
        await workflow.wait_condition(lambda: self._progress.state is not RefundState.REQUESTED)
        return self._progress

    @workflow.query
    def status(self) -> RefundProgress:
        return self._progress
