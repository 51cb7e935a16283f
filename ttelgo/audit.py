"""The audit trail: who did what to which record, with before/after, for every admin action."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ttelgo.models import AuditLog

client_address: ContextVar[str | None] = ContextVar("client_address", default=None)
"""The caller's network address, set by the API for each request (None outside a request)."""
user_agent: ContextVar[str | None] = ContextVar("user_agent", default=None)
"""The caller's User-Agent header, bounded and without control characters (None outside a request)."""


def provenance() -> dict[str, str | None]:
    """Who is asking, for the order and refund records the request starts (their `client_ip`, `user_agent`)."""
    return {"client_ip": client_address.get(), "user_agent": user_agent.get()}


def record_action(
    session: AsyncSession,
    *,
    actor: str,
    action: str,
    target_type: str,
    target_id: object,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    reason: str | None = None,
    request_id: str | None = None,
) -> AuditLog:
    """Adds the row to the caller's transaction, so the audit entry commits with the change or not at all."""
    actor_type, _, actor_id = actor.partition(":")
    entry = AuditLog(
        actor_type=actor_type,
        actor_id=actor_id or None,
        action=action,
        target_type=target_type,
        target_id=str(target_id),
        before=before,
        after=after,
        reason=reason,
        request_id=request_id,
        ip_address=client_address.get(),
        user_agent=user_agent.get(),
    )
    session.add(entry)
    return entry


@asynccontextmanager
async def audited(sessions: async_sessionmaker[AsyncSession], **row: Any) -> AsyncIterator[AuditLog]:
    """For an action carried out elsewhere (by a workflow): the row (`record_action`'s arguments) is
    written before the action starts, so a row the database refuses stops the action before anything is
    sent; it commits once the action has succeeded (the caller fills in `after`), and rolls back with it.
    Nothing is locked meanwhile but the new row itself."""
    async with sessions() as session, session.begin():
        entry = record_action(session, **row)
        await session.flush()
        yield entry
