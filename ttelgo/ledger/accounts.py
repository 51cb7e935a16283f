"""Accounts: get-or-create for platform accounts and vendor wallets, their floors, and their totals
(a wallet's cached on its row, a platform account's derived from its transfers: the view
`ledger_movements`)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import BigInteger, Uuid, column, select, table, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from ttelgo.ledger.errors import AccountNotFound, LedgerError
from ttelgo.models import Account, AccountKind, BillingMode, Vendor

PLATFORM_KINDS = frozenset(
    {
        AccountKind.CARD_CLEARING,
        AccountKind.REVENUE,
        AccountKind.SUPPLIER_COST,
        AccountKind.SUPPLIER_PAYABLE,
        AccountKind.ADJUSTMENTS,
    }
)
_UNIQUE_ACCOUNT = "uq_accounts_kind_vendor_id_currency"

# The views of migration 0016. `ledger_movements`: totals recomputed from the transfers (what a platform
# account holds); `account_totals`: every account's, whoever keeps them (for whole-ledger reads).
_TOTAL_COLUMNS = (
    "debits_posted_minor",
    "credits_posted_minor",
    "debits_pending_minor",
    "credits_pending_minor",
)
LEDGER_MOVEMENTS = table(
    "ledger_movements", column("account_id", Uuid), *(column(name, BigInteger) for name in _TOTAL_COLUMNS)
)
ACCOUNT_TOTALS = table(
    "account_totals", column("account_id", Uuid), *(column(name, BigInteger) for name in _TOTAL_COLUMNS)
)
_CACHED = tuple(getattr(Account, name) for name in _TOTAL_COLUMNS)
_DERIVED = tuple(LEDGER_MOVEMENTS.c[name] for name in _TOTAL_COLUMNS)


@dataclass(frozen=True)
class AccountTotals:
    debits_posted_minor: int
    credits_posted_minor: int
    debits_pending_minor: int
    credits_pending_minor: int

    @property
    def balance_minor(self) -> int:
        """Credit-normal posted balance: what the vendor has (negative means owed)."""
        return self.credits_posted_minor - self.debits_posted_minor

    @property
    def available_minor(self) -> int:
        """Balance less what is held; pending credits are not spendable until posted."""
        return self.balance_minor - self.debits_pending_minor


async def account_totals(session: AsyncSession, account_id: uuid.UUID) -> AccountTotals:
    """The committed totals of any account as of now."""
    totals, _limit, _currency = await _read(session, account_id)
    return totals


async def _read(session: AsyncSession, account_id: uuid.UUID) -> tuple[AccountTotals, int, str]:
    """Totals, overdraft limit and currency, re-read (the caller's Account object may be stale). A wallet's
    are its cached columns: one primary-key read, whatever its history. Only a platform account's are
    aggregated from its transfers."""
    row = (
        await session.execute(
            select(Account.vendor_id, Account.overdraft_limit_minor, Account.currency, *_CACHED).where(
                Account.id == account_id
            )
        )
    ).one_or_none()
    if row is None:
        raise AccountNotFound(f"no account {account_id}")
    vendor_id, limit, currency, *cached = row
    if vendor_id is not None:
        return AccountTotals(*cached), limit, currency
    derived = (
        await session.execute(select(*_DERIVED).where(LEDGER_MOVEMENTS.c.account_id == account_id))
    ).one_or_none()
    return AccountTotals(*(derived or (0, 0, 0, 0))), limit, currency


def wallet_floor(vendor: Vendor) -> int:
    """How far below zero the wallet may go: the credit limit for POSTPAID, nothing for PREPAID."""
    return vendor.credit_limit_minor if vendor.billing_mode is BillingMode.POSTPAID else 0


async def _get_or_create(
    session: AsyncSession,
    kind: AccountKind,
    vendor_id: uuid.UUID | None,
    currency: str,
    *,
    enforce_floor: bool,
    overdraft_limit_minor: int,
) -> Account:
    query = select(Account).where(
        Account.kind == kind,
        Account.vendor_id.is_(None) if vendor_id is None else Account.vendor_id == vendor_id,
        Account.currency == currency,
    )
    account = await session.scalar(query)
    if account is None:
        # A concurrent creator may win: DO NOTHING waits for it and the SELECT then sees its row.
        await session.execute(
            insert(Account)
            .values(
                id=uuid.uuid4(),
                kind=kind,
                vendor_id=vendor_id,
                currency=currency,
                enforce_floor=enforce_floor,
                overdraft_limit_minor=overdraft_limit_minor,
            )
            .on_conflict_do_nothing(constraint=_UNIQUE_ACCOUNT)
        )
        account = (await session.scalars(query)).one()
    return account


async def platform_account(session: AsyncSession, kind: AccountKind, currency: str) -> Account:
    """The platform's account of `kind` in `currency`; no floor, it may go negative."""
    if kind not in PLATFORM_KINDS:
        raise LedgerError(f"{kind} is not a platform account kind")
    return await _get_or_create(session, kind, None, currency, enforce_floor=False, overdraft_limit_minor=0)


async def vendor_wallet(session: AsyncSession, vendor_id: uuid.UUID, currency: str) -> Account:
    """The vendor's wallet in `currency`, created with the floor its billing terms give."""
    vendor = await session.get(Vendor, vendor_id)
    if vendor is None:
        raise AccountNotFound(f"no vendor {vendor_id}", code="VENDOR_NOT_FOUND")
    return await _get_or_create(
        session,
        AccountKind.VENDOR_WALLET,
        vendor_id,
        currency,
        enforce_floor=True,
        overdraft_limit_minor=wallet_floor(vendor),
    )


async def sync_wallet_limits(session: AsyncSession, vendor: Vendor) -> None:
    """Apply the vendor's (new) billing terms to all its wallets. Lowering a limit below what is
    already spent is allowed; it only blocks further debits (and `check_invariants` reports it)."""
    await session.execute(
        update(Account)
        .where(Account.kind == AccountKind.VENDOR_WALLET, Account.vendor_id == vendor.id)
        .values(enforce_floor=True, overdraft_limit_minor=wallet_floor(vendor))
    )


@dataclass(frozen=True)
class WalletBalance:
    balance_minor: int
    available_minor: int
    held_minor: int
    credit_limit_minor: int
    currency: str


async def wallet_balance(session: AsyncSession, account: Account) -> WalletBalance:
    """The committed totals as of now (re-read: the caller's Account object may be stale)."""
    totals, limit, currency = await _read(session, account.id)
    return WalletBalance(
        balance_minor=totals.balance_minor,
        available_minor=totals.available_minor,
        held_minor=totals.debits_pending_minor,
        credit_limit_minor=limit,
        currency=currency,
    )
