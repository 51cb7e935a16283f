"""The audit row of an admin action that moves money through the ledger.

The ledger commits each transfer itself (a server-side function in autocommit), so the row cannot share
its transaction. It is committed just BEFORE the transfer instead, keyed by the transfer's id
(`after.transfer_id`): a crash can then leave a row whose transfer id names no transfer (an action cut
short before any money moved: look the id up), never money moved without its row. A retry of the same
action refreshes its row instead of adding one, and leaves it as written once the money has moved; a
transfer the ledger refuses (which writes nothing) takes its row back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ttelgo.audit import record_action
from ttelgo.ledger import LedgerError, TransferConflict
from ttelgo.models import AuditLog, Transfer


@asynccontextmanager
async def audited_transfer(
    sessions: async_sessionmaker[AsyncSession], transfer_id: str, **row: Any
) -> AsyncIterator[None]:
    """Commits the row (`record_action`'s arguments, `after` gaining `transfer_id`), then runs the body,
    which makes the transfer `transfer_id`."""
    after = {**(row.pop("after", None) or {}), "transfer_id": transfer_id}
    async with sessions() as session, session.begin():
        earlier = await session.scalar(
            select(AuditLog).where(
                AuditLog.action == row["action"],
                AuditLog.target_type == row["target_type"],
                AuditLog.target_id == str(row["target_id"]),
                AuditLog.after["transfer_id"].astext == transfer_id,
            )
        )
        if earlier is None:
            entry = record_action(session, after=after, **row)
        elif await session.get(Transfer, transfer_id) is None:  # cut short before the money moved
            earlier.after, entry = after, earlier
        else:  # the money moved: its row stays as it was written then
            entry = earlier
        await session.flush()
        entry_id = entry.id
    try:
        yield
    except LedgerError as exc:
        if not isinstance(exc, TransferConflict):  # a refusal wrote nothing; a conflict names an old move
            async with sessions() as session, session.begin():
                await session.execute(delete(AuditLog).where(AuditLog.id == entry_id))
        raise
