"""Money moves on the vendor wallet: an order's hold, then post or void; a paid top-up's credit. Transfer
ids come from the workflow id, so a retried activity finds its own transfer instead of making a second one."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contracts import (
    CREDIT_REFUND,
    CREDIT_TOPUP,
    HOLD_FUNDS,
    POST_HOLD,
    VOID_HOLD,
    OrderInput,
    RefundInput,
    RefundPlan,
    TopupInput,
)
from ttelgo import ledger
from ttelgo.models import AccountKind, LedgerEntryType


def hold_id(order: OrderInput) -> str:
    return f"{order.workflow_id}:hold"


class LedgerActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    @activity.defn(name=HOLD_FUNDS)
    async def hold_funds(self, order: OrderInput) -> None:
        assert order.vendor_id is not None, "only wallet orders hold funds"
        async with self.sessions() as session, session.begin():
            wallet = await ledger.vendor_wallet(session, order.vendor_id, order.currency)
            revenue = await ledger.platform_account(session, AccountKind.REVENUE, order.currency)
        spec = ledger.TransferSpec(
            id=hold_id(order),
            debit_account_id=wallet.id,
            credit_account_id=revenue.id,
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
    async def post_hold(self, order: OrderInput) -> None:
        await ledger.post_pending(self.sessions, f"{order.workflow_id}:post", hold_id(order))

    @activity.defn(name=VOID_HOLD)
    async def void_hold(self, order: OrderInput) -> None:
        await ledger.void_pending(self.sessions, f"{order.workflow_id}:void", hold_id(order))

    @activity.defn(name=CREDIT_TOPUP)
    async def credit_topup(self, topup: TopupInput) -> None:
        """Card money received (card clearing) becomes wallet balance, exactly once per top-up."""
        async with self.sessions() as session, session.begin():
            wallet = await ledger.vendor_wallet(session, topup.vendor_id, topup.currency)
            clearing = await ledger.platform_account(session, AccountKind.CARD_CLEARING, topup.currency)
        spec = ledger.TransferSpec(
            id=f"{topup.workflow_id}:credit",
            debit_account_id=clearing.id,
            credit_account_id=wallet.id,
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
        async with self.sessions() as session, session.begin():
            wallet = await ledger.vendor_wallet(session, plan.vendor_id, plan.currency)
            revenue = await ledger.platform_account(session, AccountKind.REVENUE, plan.currency)
        spec = ledger.TransferSpec(
            id=f"{refund.workflow_id}:credit",
            debit_account_id=revenue.id,
            credit_account_id=wallet.id,
            amount_minor=plan.amount_minor,
            currency=plan.currency,
            code="order_refund",
            entry_type=LedgerEntryType.REFUND,
            order_id=refund.order_id,
            memo=refund.reason[:200],
        )
        await ledger.create_transfer(self.sessions, spec)
