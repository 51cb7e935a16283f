"""Transaction-scoped advisory locks: one key per business object, held until the caller's transaction
ends. They serialise work that spans the ledger, whose transfers commit on connections of their own, so a
row lock held here would not cover them (and `FOR UPDATE` on a row the ledger references would block its
foreign-key checks)."""

from __future__ import annotations

from enum import IntEnum

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession


class LockSpace(IntEnum):
    """The first key of `pg_advisory_xact_lock(int, int)`, one per kind of object locked."""

    VENDOR_INVOICES = 1401  # issuing, settling and debiting against a vendor's POSTPAID invoices
    ORDER_SUPPLIER_CREDIT = 1402  # crediting an order's supplier cost back


async def hold(session: AsyncSession, space: LockSpace, key: object) -> None:
    """Waits for, then holds until the transaction ends, the lock on `key` (re-entrant in a transaction).
    The second key is a hash of `str(key)`: a collision only serialises two objects needlessly."""
    await session.execute(select(func.pg_advisory_xact_lock(int(space), func.hashtext(str(key)))))
