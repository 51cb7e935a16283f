"""The audit trail: who did what to which record, with before/after, for every admin action."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from ttelgo.models import AuditLog


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
    )
    session.add(entry)
    return entry
