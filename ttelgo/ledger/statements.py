"""A wallet's statement over a period, derived from its statement rows and their transfers (read-only).

Statement rows record holds as well as postings, so their `amount_minor` does not add up to the posted
balance: a hold and the post that settles it both show the same debit. What a row did to the posted
balance follows from its transfer's kind: SINGLE and POST_PENDING moved it, PENDING and VOID_PENDING did
not. The period's balances are sums of those moves, so opening + the period's moves = closing exactly,
whatever order concurrent transactions stamped `created_at` in. Run these in one snapshot (REPEATABLE READ)
for figures that agree with each other while transfers keep committing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, case, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from ttelgo.models import Account, AccountKind, LedgerEntryType, Transfer, TransferKind, VendorLedgerEntry

HOLD_KINDS = (TransferKind.PENDING, TransferKind.VOID_PENDING)

POSTED_MINOR = case((Transfer.kind.in_(HOLD_KINDS), 0), else_=VendorLedgerEntry.amount_minor)
"""What a row moved the posted balance by (signed from the vendor's side, like `amount_minor`); needs the
row joined to its transfer."""


@dataclass(frozen=True)
class TypeTotal:
    entry_type: LedgerEntryType
    count: int
    amount_minor: int
    posted_minor: int


@dataclass(frozen=True)
class PeriodSummary:
    opening_balance_minor: int
    closing_balance_minor: int
    held_at_close_minor: int
    totals: list[TypeTotal]  # every entry type, in the enum's order, zeros included

    @classmethod
    def empty(cls) -> PeriodSummary:
        """The summary of a wallet that does not exist yet."""
        return cls(0, 0, 0, [TypeTotal(entry_type, 0, 0, 0) for entry_type in LedgerEntryType])

    @property
    def count(self) -> int:
        return sum(total.count for total in self.totals)


async def find_wallet(session: AsyncSession, vendor_id: uuid.UUID, currency: str) -> Account | None:
    """The vendor's wallet in `currency`, if it exists (never created here: a statement only reads)."""
    return await session.scalar(
        select(Account).where(
            Account.kind == AccountKind.VENDOR_WALLET,
            Account.vendor_id == vendor_id,
            Account.currency == currency,
        )
    )


def entries_query(
    account_id: uuid.UUID, start: datetime, end: datetime, *, newest_first: bool = True
) -> Select[Any]:
    """(row, posted_minor) for the rows of [start, end), in the order they were written (or reversed)."""
    return (
        select(VendorLedgerEntry, POSTED_MINOR.label("posted_minor"))
        .join(Transfer, Transfer.id == VendorLedgerEntry.transfer_id)
        .where(
            VendorLedgerEntry.account_id == account_id,
            VendorLedgerEntry.created_at >= start,
            VendorLedgerEntry.created_at < end,
        )
        .order_by(VendorLedgerEntry.id.desc() if newest_first else VendorLedgerEntry.id)
    )


async def summarize(
    session: AsyncSession, account_id: uuid.UUID, start: datetime, end: datetime
) -> PeriodSummary:
    """Opening and closing posted balance of [start, end), totals by entry type, and the holds still open
    at `end` (money set aside for orders in flight, not in the posted balance)."""
    in_period = VendorLedgerEntry.created_at >= start
    rows = await session.execute(
        select(
            VendorLedgerEntry.entry_type,
            func.count().filter(in_period),
            func.coalesce(func.sum(VendorLedgerEntry.amount_minor).filter(in_period), 0),
            func.coalesce(func.sum(POSTED_MINOR).filter(in_period), 0),
            func.coalesce(func.sum(POSTED_MINOR).filter(~in_period), 0),
        )
        .join(Transfer, Transfer.id == VendorLedgerEntry.transfer_id)
        .where(VendorLedgerEntry.account_id == account_id, VendorLedgerEntry.created_at < end)
        .group_by(VendorLedgerEntry.entry_type)
    )
    found = {
        entry_type: (int(n), int(amount), int(posted), int(before))
        for entry_type, n, amount, posted, before in rows
    }
    opening = sum(before for *_, before in found.values())
    totals = []
    for entry_type in LedgerEntryType:
        count, amount, posted, _ = found.get(entry_type, (0, 0, 0, 0))
        totals.append(TypeTotal(entry_type, count, amount, posted))
    return PeriodSummary(
        opening_balance_minor=opening,
        closing_balance_minor=opening + sum(total.posted_minor for total in totals),
        held_at_close_minor=await held_at(session, account_id, end),
        totals=totals,
    )


async def held_at(session: AsyncSession, account_id: uuid.UUID, at: datetime) -> int:
    """Debits held on the account at `at`: holds made before it that nothing had posted or voided yet."""
    resolution = aliased(Transfer)
    held = await session.scalar(
        select(func.coalesce(func.sum(Transfer.amount_minor), 0)).where(
            Transfer.kind == TransferKind.PENDING,
            Transfer.debit_account_id == account_id,
            Transfer.created_at < at,
            ~exists().where(and_(resolution.pending_id == Transfer.id, resolution.created_at < at)),
        )
    )
    return int(held or 0)
