"""Refund records: reserving an amount against an order (so concurrent refunds can never add up to more
than was captured) and settling it when the money has gone back, or has not, or came back again."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contracts import (
    REFUND_FAILED,
    RESERVE_REFUND,
    SETTLE_REFUND,
    RefundInput,
    RefundPlan,
    RefundSettlement,
    RevokeBundle,
)
from activities.ledger import book_card_refund
from ttelgo.models import (
    Channel,
    Esim,
    EsimBundle,
    EsimStatus,
    Order,
    OrderKind,
    OrderStatus,
    Payment,
    PaymentStatus,
    Refund,
    RefundStatus,
)

# PAID is the short moment before provisioning, whose failure refunds by itself: refunds wait for the end.
REFUNDABLE = (OrderStatus.COMPLETED, OrderStatus.PARTIALLY_REFUNDED)


def refundable(order: Order) -> bool:
    """Delivered orders, and failed card orders whose automatic refund did not go through."""
    failed_unrefunded = order.status is OrderStatus.FAILED and order.failure_code == REFUND_FAILED
    return order.status in REFUNDABLE or (failed_unrefunded and order.channel is Channel.B2C)


USED_BUNDLE_STATES = ("active", "depleted", "expired")


def _refused(code: str, message: str) -> ApplicationError:
    return ApplicationError(message, type=code, non_retryable=True)


def is_used(esim: Esim) -> bool:
    return esim.first_used_at is not None or esim.bundle_state in USED_BUNDLE_STATES


def bundle_used(bundle: EsimBundle) -> bool:
    """A top-up's bundle, by the same rule as an eSIM's: started, or in a state that comes with use."""
    consumed = bundle.data_remaining_bytes is not None and bundle.data_remaining_bytes < (
        bundle.data_total_bytes or 0
    )
    return bundle.started_at is not None or bundle.state in USED_BUNDLE_STATES or consumed


async def _used(session: AsyncSession, order: Order) -> bool:
    """Whether what the order delivered has been used: its eSIMs, or for a top-up the one bundle it put on
    an eSIM that belongs to an earlier order (whose use says nothing about the top-up's)."""
    if order.kind is OrderKind.TOPUP:
        bundle = await session.scalar(select(EsimBundle).where(EsimBundle.order_id == order.id))
        return bundle is not None and bundle_used(bundle)
    esims = await session.scalars(select(Esim).where(Esim.order_id == order.id))
    return any(is_used(e) for e in esims)


async def _delivered(session: AsyncSession, order: Order) -> bool:
    delivered = (
        select(EsimBundle.id).where(EsimBundle.order_id == order.id)
        if order.kind is OrderKind.TOPUP
        else select(Esim.id).where(Esim.order_id == order.id)
    )
    return await session.scalar(delivered.limit(1)) is not None


class RefundActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    @activity.defn(name=RESERVE_REFUND)
    async def reserve(self, request: RefundInput) -> RefundPlan:
        """Checks and reserves under the order's row lock; a retry finds its own reservation."""
        async with self.sessions() as session, session.begin():
            order = await session.scalar(
                select(Order)
                .where(Order.id == request.order_id, Order.deleted_at.is_(None))
                .with_for_update()
            )
            if order is None or (request.vendor_id and order.vendor_id != request.vendor_id):
                raise _refused("ORDER_NOT_FOUND", f"no order {request.order_id}")
            refund = await session.get(Refund, request.refund_id)
            if refund is None:
                refund = self._new_refund(request, order, used=await _used(session, order))
                session.add(refund)
                order.refunded_minor += refund.amount_minor
            payment = await session.scalar(select(Payment).where(Payment.order_id == order.id))
            return RefundPlan(
                amount_minor=refund.amount_minor,
                currency=order.currency,
                channel=order.channel,
                vendor_id=order.vendor_id,
                intent_id=payment.provider_payment_id if payment else None,
                kind=order.kind,
            )

    @staticmethod
    def _new_refund(request: RefundInput, order: Order, *, used: bool) -> Refund:
        if not refundable(order):
            raise _refused("ORDER_INVALID_STATE", f"a {order.status.value} order cannot be refunded")
        left = order.total_minor - order.refunded_minor  # pending refunds count as refunded
        amount = left if request.amount_minor is None else request.amount_minor
        if order.status is OrderStatus.FAILED and amount != left:  # nothing was delivered: all goes back
            raise _refused("ORDER_INVALID_STATE", f"a FAILED order is refunded in full ({left} left)")
        if amount <= 0 or amount > left:
            raise _refused(
                "REFUND_EXCEEDS_CAPTURED",
                f"{amount} asked, {left} of {order.total_minor} {order.currency} left to refund",
            )
        if used and not request.allow_used:
            raise _refused("ESIM_ALREADY_USED", "the eSIM has been used; an admin may override")
        return Refund(
            id=request.refund_id,
            order_id=order.id,
            amount_minor=amount,
            currency=order.currency,
            reason=request.reason,
            requested_by=request.actor,
            used_esim_override=request.allow_used,
            workflow_id=request.workflow_id,
            client_ip=request.client_ip,
            user_agent=request.user_agent,
        )

    @activity.defn(name=SETTLE_REFUND)
    async def settle(self, settlement: RefundSettlement) -> list[RevokeBundle]:
        """Each move happens once (PENDING → SUCCEEDED/FAILED, SUCCEEDED → REVERSED); a retry is a no-op.

        Answers the bundles to revoke at eSIM Go: all of the order's, once the refunds that have actually
        succeeded add up to its total (a partial refund leaves the eSIMs working). A top-up's is its one
        bundle on the eSIM it names; the workflow returns that one as a failed top-up's is returned. A card refund's money
        then leaves REVENUE in the ledger (after the record commits, so a retry books what a crash cut
        short; the transfer ids are the refund's, so nothing twice)."""
        to_revoke = await self._record(settlement)
        await book_card_refund(self.sessions, settlement.refund_id)
        return to_revoke

    async def _record(self, settlement: RefundSettlement) -> list[RevokeBundle]:
        async with self.sessions() as session, session.begin():
            refund = await session.get_one(Refund, settlement.refund_id, with_for_update=True)
            order = await session.scalar(select(Order).where(Order.id == refund.order_id).with_for_update())
            assert order is not None
            payment = await session.scalar(
                select(Payment).where(Payment.order_id == order.id).with_for_update()
            )
            moves = {
                RefundStatus.SUCCEEDED: RefundStatus.PENDING,
                RefundStatus.FAILED: RefundStatus.PENDING,
                RefundStatus.REVERSED: RefundStatus.SUCCEEDED,
            }
            if refund.status is settlement.outcome:  # a retry after this very move was committed
                return await self._to_revoke(session, order, settlement.outcome)
            if refund.status is not moves[settlement.outcome]:
                return []
            refund.status = settlement.outcome
            refund.provider_refund_id = settlement.provider_refund_id or refund.provider_refund_id
            refund.failure_reason = settlement.failure_reason
            refund.settled_at = datetime.now(UTC)
            if settlement.outcome is not RefundStatus.SUCCEEDED:
                order.refunded_minor -= refund.amount_minor  # the reservation, or the refund, is undone
            await session.flush()
            await follow_refunded_money(session, order, payment)
            return await self._to_revoke(session, order, settlement.outcome)

    @staticmethod
    async def _to_revoke(session: AsyncSession, order: Order, outcome: RefundStatus) -> list[RevokeBundle]:
        if outcome is not RefundStatus.SUCCEEDED or await _settled_minor(session, order) < order.total_minor:
            return []
        if order.kind is OrderKind.TOPUP:
            assert order.target_iccid is not None
            return [RevokeBundle(iccid=order.target_iccid, bundle_name=order.bundle_code)]
        esims = await session.scalars(
            select(Esim).where(Esim.order_id == order.id, Esim.status != EsimStatus.REVOKED)
        )
        return [RevokeBundle(iccid=e.iccid, bundle_name=e.bundle_name) for e in esims]


async def follow_refunded_money(session: AsyncSession, order: Order, payment: Payment | None) -> None:
    """Order and payment statuses follow the money that has actually gone back (succeeded refunds, ours or
    made outside TTelGo), not what is still pending. The caller holds both rows locked."""
    settled = await _settled_minor(session, order)
    if settled == 0:
        # Nothing went back (or it came back): a delivered order is whole again, one that failed and
        # delivered nothing is FAILED again, still with REFUND_FAILED for an admin.
        order.status = OrderStatus.COMPLETED if await _delivered(session, order) else OrderStatus.FAILED
    else:
        full = settled == order.total_minor
        order.status = OrderStatus.REFUNDED if full else OrderStatus.PARTIALLY_REFUNDED
    if payment is not None:
        payment.refunded_minor = settled
        if settled == 0:
            payment.status = PaymentStatus.SUCCEEDED
        else:
            full = settled == payment.amount_minor
            payment.status = PaymentStatus.REFUNDED if full else PaymentStatus.PARTIALLY_REFUNDED


def follows_refunds(order: Order) -> bool:
    """An order whose status is the refunds' to decide: one that can be refunded, or has been in full.
    Anything else is still owned by its running workflow."""
    return refundable(order) or order.status is OrderStatus.REFUNDED


async def _settled_minor(session: AsyncSession, order: Order) -> int:
    return int(
        await session.scalar(
            select(func.coalesce(func.sum(Refund.amount_minor), 0)).where(
                Refund.order_id == order.id, Refund.status == RefundStatus.SUCCEEDED
            )
        )
        or 0
    )
