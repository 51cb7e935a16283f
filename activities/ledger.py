"""Money moves on the vendor wallet: an order's hold, then post or void; a paid top-up's credit; and the
supplier's side of every order: its wholesale cost booked, and credited back when its bundles are revoked.
Transfer ids come from the workflow (or order) id, so a retried activity finds its own transfer instead of
making a second one."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contracts import (
    BOOK_SUPPLIER_COST,
    CREDIT_REFUND,
    CREDIT_SUPPLIER_COST,
    CREDIT_TOPUP,
    HOLD_FUNDS,
    POST_HOLD,
    VOID_HOLD,
    OrderInput,
    PostedHold,
    RefundInput,
    RefundPlan,
    SupplierCredit,
    TopupInput,
)
from ttelgo import ledger
from ttelgo.low_balance import order_debit_crossing
from ttelgo.models import AccountKind, LedgerEntryType, Order, Transfer

SUPPLIER_COST_CODE = "supplier_cost"
SUPPLIER_CREDIT_CODE = "supplier_credit"


def hold_id(order: OrderInput) -> str:
    return f"{order.workflow_id}:hold"


def supplier_cost_id(order_id: uuid.UUID) -> str:
    """Per order, not per run: an operator's retry (`order-{id}-attempt-{n}`) never books a second cost."""
    return f"order-{order_id}:supplier-cost"


class LedgerActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def _wallet_spec(
        self,
        *,
        transfer_id: str,
        vendor_id: uuid.UUID,
        platform: AccountKind,
        into_wallet: bool,
        amount_minor: int,
        currency: str,
        code: str,
        entry_type: LedgerEntryType,
        memo: str,
        order_id: uuid.UUID | None = None,
    ) -> ledger.TransferSpec:
        """A transfer between a vendor's wallet and one of the platform's accounts, either way."""
        async with self.sessions() as session, session.begin():
            wallet = await ledger.vendor_wallet(session, vendor_id, currency)
            other = await ledger.platform_account(session, platform, currency)
        debit, credit = (other, wallet) if into_wallet else (wallet, other)
        return ledger.TransferSpec(
            id=transfer_id,
            debit_account_id=debit.id,
            credit_account_id=credit.id,
            amount_minor=amount_minor,
            currency=currency,
            code=code,
            entry_type=entry_type,
            order_id=order_id,
            memo=memo,
        )

    @activity.defn(name=HOLD_FUNDS)
    async def hold_funds(self, order: OrderInput) -> None:
        assert order.vendor_id is not None, "only wallet orders hold funds"
        spec = await self._wallet_spec(
            transfer_id=hold_id(order),
            vendor_id=order.vendor_id,
            platform=AccountKind.REVENUE,
            into_wallet=False,
            amount_minor=order.total_minor,
            currency=order.currency,
            code="order_hold",
            entry_type=LedgerEntryType.ORDER_HOLD,
            order_id=order.order_id,
            memo=f"{order.quantity} × {order.bundle_code}",
        )
        try:
            await ledger.create_transfer(self.sessions, spec, pending=True)
        except ledger.InsufficientFunds as exc:
            # A business answer, not a fault: no retry, and the API turns the type into a 402.
            raise ApplicationError(exc.detail, type=exc.code, non_retryable=True) from exc

    @activity.defn(name=POST_HOLD)
    async def post_hold(self, order: OrderInput) -> PostedHold:
        """Posts the hold (once) and tells whether this debit took the wallet under the vendor's
        low-balance threshold, from the statement row written under the wallet lock (a retry answers
        the same)."""
        posting = await ledger.post_pending(self.sessions, f"{order.workflow_id}:post", hold_id(order))
        async with self.sessions() as session:
            crossing = await order_debit_crossing(session, transfer_id=posting.id)
        return PostedHold(low_balance=crossing is not None)

    @activity.defn(name=VOID_HOLD)
    async def void_hold(self, order: OrderInput) -> None:
        await ledger.void_pending(self.sessions, f"{order.workflow_id}:void", hold_id(order))

    @activity.defn(name=CREDIT_TOPUP)
    async def credit_topup(self, topup: TopupInput) -> None:
        """Card money received (card clearing) becomes wallet balance, exactly once per top-up."""
        spec = await self._wallet_spec(
            transfer_id=f"{topup.workflow_id}:credit",
            vendor_id=topup.vendor_id,
            platform=AccountKind.CARD_CLEARING,
            into_wallet=True,
            amount_minor=topup.amount_minor,
            currency=topup.currency,
            code="wallet_topup",
            entry_type=LedgerEntryType.TOPUP,
            memo="card top-up",
        )
        await ledger.create_transfer(self.sessions, spec)

    @activity.defn(name=CREDIT_REFUND)
    async def credit_refund(self, refund: RefundInput, plan: RefundPlan) -> None:
        """A wallet order's money back to the wallet, exactly once per refund."""
        assert plan.vendor_id is not None, "only wallet orders are refunded to a wallet"
        spec = await self._wallet_spec(
            transfer_id=f"{refund.workflow_id}:credit",
            vendor_id=plan.vendor_id,
            platform=AccountKind.REVENUE,
            into_wallet=True,
            amount_minor=plan.amount_minor,
            currency=plan.currency,
            code="order_refund",
            entry_type=LedgerEntryType.REFUND,
            order_id=refund.order_id,
            memo=refund.reason[:200],
        )
        await ledger.create_transfer(self.sessions, spec)

    @activity.defn(name=BOOK_SUPPLIER_COST)
    async def book_supplier_cost(self, order: OrderInput) -> None:
        """What eSIM Go charged for a completed order's bundles: SUPPLIER_PAYABLE → SUPPLIER_COST, once."""
        async with self.sessions() as session:
            row = await session.get_one(Order, order.order_id)
            # The order row is the record of what was bought at which wholesale price.
            amount = row.wholesale_cost_minor
            if amount is None:
                amount = order.wholesale_unit_minor * order.quantity
            currency, memo = row.currency, f"{row.quantity} × {row.bundle_code}"
        await self._supplier_transfer(
            supplier_cost_id(order.order_id),
            order.order_id,
            amount,
            currency,
            code=SUPPLIER_COST_CODE,
            to_cost=True,
            memo=memo,
        )

    @activity.defn(name=CREDIT_SUPPLIER_COST)
    async def credit_supplier_cost(self, credit: SupplierCredit) -> None:
        """Bundles revoked with refundToBalance: their wholesale cost back, SUPPLIER_COST →
        SUPPLIER_PAYABLE, once per refund and never more than the order's booked cost (an order completed
        before costs were booked has nothing to credit)."""
        async with self.sessions() as session:
            booked = await session.get(Transfer, supplier_cost_id(credit.order_id))
            row = await session.get_one(Order, credit.order_id)
            if booked is None or credit.revoked <= 0:
                return
            amount = min(booked.amount_minor * credit.revoked // row.quantity, booked.amount_minor)
            memo = f"{credit.revoked} × {row.bundle_code} revoked"
        await self._supplier_transfer(
            f"{credit.refund_workflow_id}:supplier-cost",
            credit.order_id,
            amount,
            booked.currency,
            code=SUPPLIER_CREDIT_CODE,
            to_cost=False,
            memo=memo,
        )

    async def _supplier_transfer(
        self,
        transfer_id: str,
        order_id: uuid.UUID,
        amount_minor: int,
        currency: str,
        *,
        code: str,
        to_cost: bool,
        memo: str,
    ) -> None:
        if amount_minor <= 0:  # a free bundle costs nothing to book
            return
        async with self.sessions() as session, session.begin():
            payable = await ledger.platform_account(session, AccountKind.SUPPLIER_PAYABLE, currency)
            cost = await ledger.platform_account(session, AccountKind.SUPPLIER_COST, currency)
        debit, credit = (payable, cost) if to_cost else (cost, payable)
        spec = ledger.TransferSpec(
            id=transfer_id,
            debit_account_id=debit.id,
            credit_account_id=credit.id,
            amount_minor=amount_minor,
            currency=currency,
            code=code,
            # No wallet side, so no statement row is written; the type only matters for replays.
            entry_type=LedgerEntryType.ADJUSTMENT,
            order_id=order_id,
            memo=memo,
        )
        await ledger.create_transfer(self.sessions, spec)
