"""Money moves on the vendor wallet: an order's hold, then post or void; a paid top-up's credit; the
supplier's side of every order: its wholesale cost booked, and credited back when its bundles are revoked;
and a card order's sale: CARD_CLEARING → REVENUE when it completes, back for each card refund that went
through. Transfer ids come from the workflow, order or refund id, so a retried activity finds its own
transfer instead of making a second one."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
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
from ttelgo import invoicing, ledger
from ttelgo.ledger.margin import CARD_REFUND_CODE, CARD_REFUND_REVERSED_CODE, CARD_SALE_CODE
from ttelgo.locks import LockSpace, hold
from ttelgo.low_balance import order_debit_crossing
from ttelgo.models import (
    AccountKind,
    Channel,
    LedgerEntryType,
    Order,
    Refund,
    RefundStatus,
    Transfer,
)

SUPPLIER_COST_CODE = "supplier_cost"
SUPPLIER_CREDIT_CODE = "supplier_credit"


AccountRef = AccountKind | uuid.UUID  # a platform account by its kind, a vendor's wallet by the vendor's id


def hold_id(order: OrderInput) -> str:
    return f"{order.workflow_id}:hold"


def supplier_cost_id(order_id: uuid.UUID) -> str:
    """Per order, not per run: an operator's retry (`order-{id}-attempt-{n}`) never books a second cost."""
    return f"order-{order_id}:supplier-cost"


def card_sale_id(order_id: uuid.UUID) -> str:
    return f"order-{order_id}:card-sale"


async def book_card_refund(sessions: async_sessionmaker[AsyncSession], refund_id: uuid.UUID) -> None:
    """A card refund that went through takes its amount back out of REVENUE (REVENUE → CARD_CLEARING), and
    one a bank returned afterwards (REVERSED) puts it back; each once per refund. Only for orders whose
    sale was booked (a card order that failed, or completed before sales were booked, made no revenue),
    and never more than the sale: refunds are reserved against the order's total."""
    async with sessions() as session:
        refund = await session.get_one(Refund, refund_id)
        order = await session.get_one(Order, refund.order_id)
        sale = await session.get(Transfer, card_sale_id(order.id))
    if order.channel is not Channel.B2C or sale is None:
        return
    if refund.status not in (RefundStatus.SUCCEEDED, RefundStatus.REVERSED):
        return
    memo = f"card refund of {order.quantity} × {order.bundle_code}"
    moves = [(f"refund-{refund.id}:card-refund", CARD_REFUND_CODE, AccountKind.REVENUE)]
    if refund.status is RefundStatus.REVERSED:
        moves.append(
            (f"refund-{refund.id}:card-refund-reversed", CARD_REFUND_REVERSED_CODE, AccountKind.CARD_CLEARING)
        )
    for transfer_id, code, debit in moves:
        credit = AccountKind.CARD_CLEARING if debit is AccountKind.REVENUE else AccountKind.REVENUE
        await platform_transfer(
            sessions,
            transfer_id,
            order.id,
            refund.amount_minor,
            refund.currency,
            debit=debit,
            credit=credit,
            code=code,
            memo=memo,
        )


async def platform_transfer(
    sessions: async_sessionmaker[AsyncSession],
    transfer_id: str,
    order_id: uuid.UUID,
    amount_minor: int,
    currency: str,
    *,
    debit: AccountKind,
    credit: AccountKind,
    code: str,
    memo: str,
) -> None:
    """A posted transfer between two of the platform's accounts, for an order."""
    if amount_minor <= 0:  # a free bundle costs nothing and sells for nothing
        return
    spec = await transfer_spec(
        sessions,
        transfer_id=transfer_id,
        debit=debit,
        credit=credit,
        amount_minor=amount_minor,
        currency=currency,
        code=code,
        # No wallet side, so no statement row is written; the type only matters for replays.
        entry_type=LedgerEntryType.ADJUSTMENT,
        order_id=order_id,
        memo=memo,
    )
    await ledger.create_transfer(sessions, spec)


async def transfer_spec(
    sessions: async_sessionmaker[AsyncSession],
    *,
    transfer_id: str,
    debit: AccountRef,
    credit: AccountRef,
    amount_minor: int,
    currency: str,
    code: str,
    entry_type: LedgerEntryType,
    memo: str,
    order_id: uuid.UUID | None = None,
) -> ledger.TransferSpec:
    """A transfer between two accounts in `currency`, each a platform account (by kind) or a vendor's wallet
    (by the vendor's id); a wallet is looked up (and created if need be) before a platform account."""
    async with sessions() as session, session.begin():
        found: dict[AccountRef, uuid.UUID] = {}
        for ref in sorted((debit, credit), key=lambda ref: isinstance(ref, AccountKind)):
            if isinstance(ref, AccountKind):
                found[ref] = (await ledger.platform_account(session, ref, currency)).id
            else:
                found[ref] = (await ledger.vendor_wallet(session, ref, currency)).id
    return ledger.TransferSpec(
        id=transfer_id,
        debit_account_id=found[debit],
        credit_account_id=found[credit],
        amount_minor=amount_minor,
        currency=currency,
        code=code,
        entry_type=entry_type,
        order_id=order_id,
        memo=memo,
    )


class LedgerActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    @activity.defn(name=HOLD_FUNDS)
    async def hold_funds(self, order: OrderInput) -> None:
        assert order.vendor_id is not None, "only wallet orders hold funds"
        spec = await transfer_spec(
            self.sessions,
            transfer_id=hold_id(order),
            debit=order.vendor_id,
            credit=AccountKind.REVENUE,
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
        """Card money received (card clearing) becomes wallet balance, exactly once per top-up, then settles
        the POSTPAID invoices the vendor's payments now cover (see `ttelgo.invoicing`)."""
        spec = await transfer_spec(
            self.sessions,
            transfer_id=f"{topup.workflow_id}:credit",
            debit=AccountKind.CARD_CLEARING,
            credit=topup.vendor_id,
            amount_minor=topup.amount_minor,
            currency=topup.currency,
            code="wallet_topup",
            entry_type=LedgerEntryType.TOPUP,
            memo="card top-up",
        )
        credited = await ledger.create_transfer(self.sessions, spec)
        async with self.sessions() as session, session.begin():
            await invoicing.settle_covered(session, topup.vendor_id, paid_by=credited.id)

    @activity.defn(name=CREDIT_REFUND)
    async def credit_refund(self, refund: RefundInput, plan: RefundPlan) -> None:
        """A wallet order's money back to the wallet, exactly once per refund."""
        assert plan.vendor_id is not None, "only wallet orders are refunded to a wallet"
        spec = await transfer_spec(
            self.sessions,
            transfer_id=f"{refund.workflow_id}:credit",
            debit=AccountKind.REVENUE,
            credit=plan.vendor_id,
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
        """What eSIM Go charged for a completed order's bundles: SUPPLIER_PAYABLE → SUPPLIER_COST, once; and
        a card order's sale: CARD_CLEARING → REVENUE, once (a wallet order's revenue is its posted hold)."""
        async with self.sessions() as session:
            row = await session.get_one(Order, order.order_id)
            # The order row is the record of what was bought at which wholesale price.
            amount = row.wholesale_cost_minor
            if amount is None:
                amount = order.wholesale_unit_minor * order.quantity
            currency, memo = row.currency, f"{row.quantity} × {row.bundle_code}"
            channel, sale_minor = row.channel, row.total_minor
        await self._supplier_transfer(
            supplier_cost_id(order.order_id),
            order.order_id,
            amount,
            currency,
            code=SUPPLIER_COST_CODE,
            to_cost=True,
            memo=memo,
        )
        if channel is Channel.B2C:
            await platform_transfer(
                self.sessions,
                card_sale_id(order.order_id),
                order.order_id,
                sale_minor,
                currency,
                debit=AccountKind.CARD_CLEARING,
                credit=AccountKind.REVENUE,
                code=CARD_SALE_CODE,
                memo=f"card sale of {memo}",
            )

    @activity.defn(name=CREDIT_SUPPLIER_COST)
    async def credit_supplier_cost(self, credit: SupplierCredit) -> None:
        """Bundles revoked with refundToBalance: their wholesale cost back, SUPPLIER_COST →
        SUPPLIER_PAYABLE, once per refund. Never more than the order's booked cost, all refunds together:
        each credit is capped at what earlier ones left, read and credited under the order's lock (an order
        completed before costs were booked has nothing to credit)."""
        this_id = f"{credit.refund_workflow_id}:supplier-cost"
        async with self.sessions() as session, session.begin():
            # Held until this credit has committed: a second refund of the order waits, then sees it.
            await hold(session, LockSpace.ORDER_SUPPLIER_CREDIT, credit.order_id)
            booked = await session.get(Transfer, supplier_cost_id(credit.order_id))
            row = await session.get_one(Order, credit.order_id)
            if booked is None or credit.revoked <= 0:
                return
            if await session.get(Transfer, this_id) is not None:
                return  # credited by an earlier attempt of this very step
            earlier = await session.scalar(
                select(func.coalesce(func.sum(Transfer.amount_minor), 0)).where(
                    Transfer.order_id == credit.order_id, Transfer.code == SUPPLIER_CREDIT_CODE
                )
            )
            share = booked.amount_minor * credit.revoked // row.quantity
            amount = min(share, booked.amount_minor - int(earlier or 0))
            await self._supplier_transfer(
                this_id,
                credit.order_id,
                amount,
                booked.currency,
                code=SUPPLIER_CREDIT_CODE,
                to_cost=False,
                memo=f"{credit.revoked} × {row.bundle_code} revoked",
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
        payable, cost = AccountKind.SUPPLIER_PAYABLE, AccountKind.SUPPLIER_COST
        await platform_transfer(
            self.sessions,
            transfer_id,
            order_id,
            amount_minor,
            currency,
            debit=payable if to_cost else cost,
            credit=cost if to_cost else payable,
            code=code,
            memo=memo,
        )
