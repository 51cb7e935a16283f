"""Money moves on the vendor wallet: an order's hold, then post or void; a paid top-up's credit. Transfer
ids come from the workflow id, so a retried activity finds its own transfer instead of making a second one."""

from __future__ import annotations

import uuid

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
    PostedHold,
    RefundInput,
    RefundPlan,
    TopupInput,
)
from ttelgo import ledger
from ttelgo.low_balance import order_debit_crossing
from ttelgo.models import AccountKind, LedgerEntryType


def hold_id(order: OrderInput) -> str:
    return f"{order.workflow_id}:hold"


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
