"""Shared set-up for the ledger tests: vendors, their wallets, the platform accounts, and read-backs."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ttelgo import ledger
from ttelgo.db import create_engine, session_factory
from ttelgo.ledger import TransferSpec
from ttelgo.ledger.accounts import ACCOUNT_TOTALS
from ttelgo.models import (
    Account,
    AccountKind,
    BillingMode,
    LedgerEntryType,
    Transfer,
    Vendor,
    VendorLedgerEntry,
)

CURRENCY = "USD"


@dataclass(frozen=True)
class Books:
    sessions: async_sessionmaker[AsyncSession]
    prepaid: uuid.UUID  # wallet of a PREPAID vendor
    postpaid: uuid.UUID  # wallet of a POSTPAID vendor
    postpaid_vendor: uuid.UUID
    prepaid_vendor: uuid.UUID
    card: uuid.UUID
    revenue: uuid.UUID
    adjustments: uuid.UUID


async def make_vendor(
    sessions: async_sessionmaker[AsyncSession],
    *,
    billing_mode: BillingMode = BillingMode.PREPAID,
    credit_limit_minor: int = 0,
) -> uuid.UUID:
    async with sessions() as session, session.begin():
        vendor = Vendor(
            name="Reseller",
            contact_email=f"{uuid.uuid4().hex[:12]}@example.com",
            billing_mode=billing_mode,
            credit_limit_minor=credit_limit_minor,
            currency=CURRENCY,
        )
        session.add(vendor)
        await session.flush()
        return vendor.id


async def wallet_id(sessions: async_sessionmaker[AsyncSession], vendor_id: uuid.UUID) -> uuid.UUID:
    async with sessions() as session, session.begin():
        return (await ledger.vendor_wallet(session, vendor_id, CURRENCY)).id


@asynccontextmanager
async def open_books(
    database_url: str, *, pool_size: int = 5, credit_limit_minor: int = 2000
) -> AsyncIterator[Books]:
    engine = create_engine(database_url, pool_size=pool_size)
    sessions = session_factory(engine)
    try:
        prepaid_vendor = await make_vendor(sessions)
        postpaid_vendor = await make_vendor(
            sessions, billing_mode=BillingMode.POSTPAID, credit_limit_minor=credit_limit_minor
        )
        async with sessions() as session, session.begin():
            platform = {
                kind: (await ledger.platform_account(session, kind, CURRENCY)).id
                for kind in (AccountKind.CARD_CLEARING, AccountKind.REVENUE, AccountKind.ADJUSTMENTS)
            }
        yield Books(
            sessions=sessions,
            prepaid=await wallet_id(sessions, prepaid_vendor),
            postpaid=await wallet_id(sessions, postpaid_vendor),
            prepaid_vendor=prepaid_vendor,
            postpaid_vendor=postpaid_vendor,
            card=platform[AccountKind.CARD_CLEARING],
            revenue=platform[AccountKind.REVENUE],
            adjustments=platform[AccountKind.ADJUSTMENTS],
        )
    finally:
        await engine.dispose()


def topup_spec(
    books: Books, wallet: uuid.UUID, amount: int, transfer_id: str, **extra: object
) -> TransferSpec:
    return TransferSpec(
        id=transfer_id,
        debit_account_id=books.card,
        credit_account_id=wallet,
        amount_minor=amount,
        currency=CURRENCY,
        code="topup",
        entry_type=LedgerEntryType.TOPUP,
        **extra,  # type: ignore[arg-type]
    )


def debit_spec(
    books: Books, wallet: uuid.UUID, amount: int, transfer_id: str, **extra: object
) -> TransferSpec:
    return TransferSpec(
        id=transfer_id,
        debit_account_id=wallet,
        credit_account_id=books.adjustments,
        amount_minor=amount,
        currency=CURRENCY,
        code="adjustment",
        entry_type=LedgerEntryType.ADJUSTMENT,
        **extra,  # type: ignore[arg-type]
    )


def hold_spec(
    books: Books, wallet: uuid.UUID, amount: int, transfer_id: str, **extra: object
) -> TransferSpec:
    return TransferSpec(
        id=transfer_id,
        debit_account_id=wallet,
        credit_account_id=books.revenue,
        amount_minor=amount,
        currency=CURRENCY,
        code="order_hold",
        entry_type=LedgerEntryType.ORDER_HOLD,
        **extra,  # type: ignore[arg-type]
    )


@dataclass(frozen=True)
class Snapshot:
    """Everything a refused transfer must leave untouched."""

    transfers: int
    entries: int
    totals: tuple[tuple[uuid.UUID, int, int, int, int], ...]


async def snapshot(sessions: async_sessionmaker[AsyncSession]) -> Snapshot:
    async with sessions() as session:
        totals = await session.execute(select(ACCOUNT_TOTALS).order_by(ACCOUNT_TOTALS.c.account_id))
        return Snapshot(
            transfers=await session.scalar(select(func.count()).select_from(Transfer)) or 0,
            entries=await session.scalar(select(func.count()).select_from(VendorLedgerEntry)) or 0,
            totals=tuple(tuple(row) for row in totals),  # type: ignore[misc]
        )


async def balance(sessions: async_sessionmaker[AsyncSession], account_id: uuid.UUID) -> ledger.WalletBalance:
    async with sessions() as session:
        account = await session.get_one(Account, account_id)
        return await ledger.wallet_balance(session, account)


async def statement(
    sessions: async_sessionmaker[AsyncSession], account_id: uuid.UUID
) -> list[tuple[LedgerEntryType, int, int, int]]:
    """(type, signed amount, balance after, available after) per row, oldest first."""
    async with sessions() as session:
        rows = await session.execute(
            select(
                VendorLedgerEntry.entry_type,
                VendorLedgerEntry.amount_minor,
                VendorLedgerEntry.balance_after_minor,
                VendorLedgerEntry.available_after_minor,
            )
            .where(VendorLedgerEntry.account_id == account_id)
            .order_by(VendorLedgerEntry.id)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


async def violations(sessions: async_sessionmaker[AsyncSession]) -> list[str]:
    async with sessions() as session:
        return await ledger.check_invariants(session)


async def totals(
    sessions: async_sessionmaker[AsyncSession], account_id: uuid.UUID
) -> tuple[int, int, int, int]:
    """(debits posted, credits posted, debits pending, credits pending) of any account."""
    async with sessions() as session:
        found = await ledger.account_totals(session, account_id)
        return (
            found.debits_posted_minor,
            found.credits_posted_minor,
            found.debits_pending_minor,
            found.credits_pending_minor,
        )
