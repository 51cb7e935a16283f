"""Money moves of an order on the vendor wallet: hold, then post or void. Transfer ids come from the
workflow id, so a retried activity finds its own transfer instead of making a second one."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contracts import HOLD_FUNDS, POST_HOLD, VOID_HOLD, OrderInput
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
