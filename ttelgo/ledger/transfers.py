"""Transfers: single, pending (a hold), and the post or void that resolves a hold, each at most once.

Every function runs its own transaction so it can retry on serialization failures and deadlocks.
Inside it: lock both accounts in id order (so two transfers over the same pair never deadlock), check
the floor under the lock, insert the immutable transfer, move the cached totals, and write the vendor
statement row(s). Ids are chosen by callers; a replay with the same fields returns the existing row.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ttelgo.ledger.accounts import available_of, balance_of
from ttelgo.ledger.errors import (
    AccountNotFound,
    InsufficientFunds,
    LedgerError,
    PendingAlreadyResolved,
    PendingNotFound,
    TransferConflict,
)
from ttelgo.models import (
    Account,
    AccountKind,
    BillingMode,
    LedgerEntryType,
    Transfer,
    TransferKind,
    Vendor,
    VendorLedgerEntry,
)

MAX_ATTEMPTS = 5
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})  # serialization_failure, deadlock_detected
# Another session wrote the same transfer id or resolved the same hold first: rerunning the work reads
# its committed row and answers as a replay (or a conflict) would.
DUPLICATE_CONSTRAINTS = frozenset({"pk_transfers", "uq_transfers_pending_id"})


@dataclass(frozen=True)
class TransferSpec:
    id: str
    debit_account_id: uuid.UUID
    credit_account_id: uuid.UUID
    amount_minor: int
    currency: str
    code: str  # business code, e.g. "order_hold", "topup", "adjustment"
    entry_type: LedgerEntryType  # the vendor statement row's type
    order_id: uuid.UUID | None = None
    memo: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    timeout_at: datetime | None = None  # for holds: when the caller's timer voids it


async def create_transfer(
    sessions: async_sessionmaker[AsyncSession], spec: TransferSpec, *, pending: bool = False
) -> Transfer:
    """Move `amount_minor` from debit to credit now (SINGLE), or hold it (PENDING) until posted/voided."""
    _check_amount(spec.amount_minor)
    if spec.debit_account_id == spec.credit_account_id:
        raise LedgerError("debit and credit account must differ")
    kind = TransferKind.PENDING if pending else TransferKind.SINGLE
    return await _run(sessions, lambda session: _create(session, spec, kind))


async def post_pending(
    sessions: async_sessionmaker[AsyncSession],
    transfer_id: str,
    pending_id: str,
    *,
    amount_minor: int | None = None,
    entry_type: LedgerEntryType = LedgerEntryType.ORDER_DEBIT,
) -> Transfer:
    """Post a hold: all of it (None) or part, releasing the rest."""
    if amount_minor is not None:
        _check_amount(amount_minor)
    return await _run(
        sessions,
        lambda session: _resolve(
            session, transfer_id, pending_id, TransferKind.POST_PENDING, amount_minor, entry_type
        ),
    )


async def void_pending(
    sessions: async_sessionmaker[AsyncSession],
    transfer_id: str,
    pending_id: str,
    *,
    entry_type: LedgerEntryType = LedgerEntryType.HOLD_RELEASE,
) -> Transfer:
    """Release a hold in full."""
    return await _run(
        sessions,
        lambda session: _resolve(
            session, transfer_id, pending_id, TransferKind.VOID_PENDING, None, entry_type
        ),
    )


def _check_amount(amount_minor: int) -> None:
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int) or amount_minor <= 0:
        raise LedgerError(f"amount must be a positive integer of minor units, not {amount_minor!r}")


async def _run(
    sessions: async_sessionmaker[AsyncSession], work: Callable[[AsyncSession], Awaitable[Transfer]]
) -> Transfer:
    """`work` in a transaction of its own, rerun on 40001/40P01 (with jittered backoff) and after losing
    an insert race on the same id or hold (at once: the rerun finds the winner's row)."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            async with sessions() as session, session.begin():
                transfer = await work(session)
                # Detached before commit, so the caller gets loaded attributes whatever expire_on_commit is.
                session.expunge(transfer)
                return transfer
        except IntegrityError as exc:
            if _constraint_name(exc) not in DUPLICATE_CONSTRAINTS or attempt == MAX_ATTEMPTS:
                raise
        except DBAPIError as exc:
            if _sqlstate(exc) not in RETRYABLE_SQLSTATES or attempt == MAX_ATTEMPTS:
                raise
            await asyncio.sleep(random.uniform(0.005, 0.02) * 2 ** (attempt - 1))
    raise AssertionError("unreachable: the last attempt returns or raises")


def _sqlstate(exc: DBAPIError) -> str | None:
    return getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)


def _constraint_name(exc: DBAPIError) -> str | None:
    # SQLAlchemy's asyncpg adapter chains the driver's exception, which names the constraint.
    return getattr(exc.orig.__cause__, "constraint_name", None) if exc.orig is not None else None


async def _find(session: AsyncSession, transfer_id: str) -> Transfer | None:
    query = select(Transfer).where(Transfer.id == transfer_id).execution_options(populate_existing=True)
    return await session.scalar(query)


async def _lock_accounts(session: AsyncSession, *ids: uuid.UUID) -> dict[uuid.UUID, Account]:
    """SELECT ... FOR UPDATE one by one in id order: every transfer takes its locks in the same order."""
    locked: dict[uuid.UUID, Account] = {}
    for account_id in sorted(ids):
        account = await session.scalar(
            select(Account)
            .where(Account.id == account_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        if account is None:
            raise AccountNotFound(f"no account {account_id}")
        locked[account_id] = account
    return locked


async def _replay(
    session: AsyncSession, existing: Transfer, expected: dict[str, Any], entry_type: LedgerEntryType
) -> Transfer:
    """The same id again: the same fields return the stored transfer, anything else is a conflict."""
    differing = sorted(name for name, value in expected.items() if getattr(existing, name) != value)
    entry_types = set(
        await session.scalars(
            select(VendorLedgerEntry.entry_type).where(VendorLedgerEntry.transfer_id == existing.id)
        )
    )
    if entry_types - {entry_type}:
        differing.append("entry_type")
    if differing:
        raise TransferConflict(
            f"transfer {existing.id} exists with different {', '.join(differing)}",
            extra={"transfer_id": existing.id, "fields": differing},
        )
    return existing


async def _create(session: AsyncSession, spec: TransferSpec, kind: TransferKind) -> Transfer:
    metadata = json.loads(json.dumps(spec.metadata))  # as JSONB will return it, for replay comparison
    expected: dict[str, Any] = {
        "kind": kind,
        "debit_account_id": spec.debit_account_id,
        "credit_account_id": spec.credit_account_id,
        "amount_minor": spec.amount_minor,
        "currency": spec.currency,
        "pending_id": None,
        "code": spec.code,
        "order_id": spec.order_id,
        "memo": spec.memo,
        "metadata_": metadata,
        "timeout_at": spec.timeout_at,
    }
    # Fast path for replays: no locks taken.
    if existing := await _find(session, spec.id):
        return await _replay(session, existing, expected, spec.entry_type)
    accounts = await _lock_accounts(session, spec.debit_account_id, spec.credit_account_id)
    debit, credit = accounts[spec.debit_account_id], accounts[spec.credit_account_id]
    for account in (debit, credit):
        if account.currency != spec.currency:
            raise LedgerError(
                f"transfer in {spec.currency} but account {account.id} is in {account.currency}"
            )
    # A concurrent twin may have committed while we waited for the locks.
    if existing := await _find(session, spec.id):
        return await _replay(session, existing, expected, spec.entry_type)
    await _check_floor(session, debit, spec.amount_minor)

    transfer = await _insert(session, id=spec.id, **expected)
    if kind is TransferKind.PENDING:
        debit.debits_pending_minor += spec.amount_minor
        credit.credits_pending_minor += spec.amount_minor
    else:
        debit.debits_posted_minor += spec.amount_minor
        credit.credits_posted_minor += spec.amount_minor
    await _write_statement(session, transfer, spec.entry_type, debit=debit, credit=credit)
    return transfer


async def _resolve(
    session: AsyncSession,
    transfer_id: str,
    pending_id: str,
    kind: TransferKind,
    amount_minor: int | None,
    entry_type: LedgerEntryType,
) -> Transfer:
    """Post (kind POST_PENDING) or void (VOID_PENDING) the hold `pending_id`."""
    hold = await _find(session, pending_id)
    if hold is None:
        raise PendingNotFound(f"no pending transfer {pending_id}")
    if hold.kind is not TransferKind.PENDING:
        raise PendingNotFound(f"transfer {pending_id} is {hold.kind}, not PENDING")
    # A post moves the given part; a void names the whole hold (the amount it releases).
    amount = hold.amount_minor if amount_minor is None else amount_minor
    if amount > hold.amount_minor:
        raise LedgerError(f"cannot post {amount} of a {hold.amount_minor} hold")
    expected: dict[str, Any] = {"kind": kind, "pending_id": pending_id, "amount_minor": amount}
    if existing := await _find(session, transfer_id):
        return await _replay(session, existing, expected, entry_type)

    accounts = await _lock_accounts(session, hold.debit_account_id, hold.credit_account_id)
    debit, credit = accounts[hold.debit_account_id], accounts[hold.credit_account_id]
    if existing := await _find(session, transfer_id):
        return await _replay(session, existing, expected, entry_type)
    # Under the locks, so a concurrent resolution has either committed (seen here) or not started.
    resolution = await session.scalar(select(Transfer).where(Transfer.pending_id == pending_id))
    if resolution is not None:
        raise PendingAlreadyResolved(
            f"pending transfer {pending_id} was already resolved by {resolution.id} ({resolution.kind})",
            extra={"pending_id": pending_id, "resolved_by": resolution.id},
        )

    transfer = await _insert(
        session,
        **expected,
        id=transfer_id,
        debit_account_id=hold.debit_account_id,
        credit_account_id=hold.credit_account_id,
        currency=hold.currency,
        code=hold.code,
        order_id=hold.order_id,
        memo=hold.memo,
        metadata_=hold.metadata_,
    )
    # The whole hold leaves pending; a post moves `amount` of it to posted, the rest is released.
    debit.debits_pending_minor -= hold.amount_minor
    credit.credits_pending_minor -= hold.amount_minor
    if kind is TransferKind.POST_PENDING:
        debit.debits_posted_minor += amount
        credit.credits_posted_minor += amount
    await _write_statement(session, transfer, entry_type, debit=debit, credit=credit)
    return transfer


async def _check_floor(session: AsyncSession, debit: Account, amount_minor: int) -> None:
    """Only new debits (single or pending) are checked; posting a hold was counted when it was held."""
    if not debit.enforce_floor:
        return
    available = available_of(debit)
    if available - amount_minor >= -debit.overdraft_limit_minor:
        return
    vendor = await session.get(Vendor, debit.vendor_id) if debit.vendor_id else None
    postpaid = vendor is not None and vendor.billing_mode is BillingMode.POSTPAID
    raise InsufficientFunds(
        f"account {debit.id} has {available} available"
        + (f" and a credit limit of {debit.overdraft_limit_minor}" if postpaid else "")
        + f"; {amount_minor} requested",
        code="CREDIT_LIMIT_EXCEEDED" if postpaid else "INSUFFICIENT_FUNDS",
        available_minor=available,
        requested_minor=amount_minor,
    )


async def _insert(session: AsyncSession, **values: Any) -> Transfer:
    # RETURNING the entity loads every column (created_at included) in the same round trip.
    return (await session.scalars(insert(Transfer).returning(Transfer), [values])).one()


def _signed_amounts(transfer: Transfer) -> tuple[int, int]:
    """(debit side, credit side) as the vendor sees it: money in is positive. A void gives back."""
    if transfer.kind is TransferKind.VOID_PENDING:
        return transfer.amount_minor, -transfer.amount_minor
    return -transfer.amount_minor, transfer.amount_minor


async def _write_statement(
    session: AsyncSession,
    transfer: Transfer,
    entry_type: LedgerEntryType,
    *,
    debit: Account,
    credit: Account,
) -> None:
    """One statement row per wallet side, with balances after this transfer's totals moved."""
    debit_amount, credit_amount = _signed_amounts(transfer)
    for account, amount in ((debit, debit_amount), (credit, credit_amount)):
        if account.kind is not AccountKind.VENDOR_WALLET:
            continue
        assert account.vendor_id is not None  # guaranteed by ck_accounts_wallet_has_vendor
        session.add(
            VendorLedgerEntry(
                vendor_id=account.vendor_id,
                account_id=account.id,
                transfer_id=transfer.id,
                order_id=transfer.order_id,
                entry_type=entry_type,
                amount_minor=amount,
                currency=transfer.currency,
                balance_after_minor=balance_of(account),
                available_after_minor=available_of(account),
                description=transfer.memo,
            )
        )
    await session.flush()
