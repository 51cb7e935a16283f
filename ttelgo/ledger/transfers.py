"""Transfers: single, pending (a hold), and the post or void that resolves a hold, each at most once.

Each is a call of a server-side function (migration 0016), sent in one statement together with the
other transfers of this process that queued meanwhile (ttelgo/ledger/batches.py). Inside it: replay
check, insert of the immutable transfer, then the wallet side(s) only: their cached totals move under
their row lock, the floor is checked, the vendor statement row is written. Platform accounts are never
locked or updated (they have no floor; their totals are derived from the transfers). Ids are chosen by
callers; a replay with the same fields returns the existing row.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ttelgo.ledger.batches import submit
from ttelgo.ledger.errors import LedgerError
from ttelgo.models import LedgerEntryType, Transfer, TransferKind


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
    item = {
        "id": spec.id,
        "kind": kind.value,
        "debit": str(spec.debit_account_id),
        "credit": str(spec.credit_account_id),
        "amount": spec.amount_minor,
        "currency": spec.currency,
        "code": spec.code,
        "order_id": None if spec.order_id is None else str(spec.order_id),
        "memo": spec.memo,
        "metadata": spec.metadata,
        "timeout_at": None if spec.timeout_at is None else spec.timeout_at.isoformat(),
        "entry_type": spec.entry_type.value,
    }
    return await submit(sessions, item)


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
    return await _resolve(
        sessions, transfer_id, pending_id, TransferKind.POST_PENDING, amount_minor, entry_type
    )


async def void_pending(
    sessions: async_sessionmaker[AsyncSession],
    transfer_id: str,
    pending_id: str,
    *,
    entry_type: LedgerEntryType = LedgerEntryType.HOLD_RELEASE,
) -> Transfer:
    """Release a hold in full."""
    return await _resolve(sessions, transfer_id, pending_id, TransferKind.VOID_PENDING, None, entry_type)


async def _resolve(
    sessions: async_sessionmaker[AsyncSession],
    transfer_id: str,
    pending_id: str,
    kind: TransferKind,
    amount_minor: int | None,
    entry_type: LedgerEntryType,
) -> Transfer:
    item = {
        "id": transfer_id,
        "pending_id": pending_id,
        "kind": kind.value,
        "amount": amount_minor,  # None: the whole hold
        "entry_type": entry_type.value,
    }
    return await submit(sessions, item)


def _check_amount(amount_minor: int) -> None:
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int) or amount_minor <= 0:
        raise LedgerError(f"amount must be a positive integer of minor units, not {amount_minor!r}")
