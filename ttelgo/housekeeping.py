"""What housekeeping deletes, chore by chore: each a bounded batch of rows past their cutoff.

The Housekeeping workflow decides each chore's cutoff (a retention period, or now for rows that say when
they expire); here is only which rows that cutoff selects. A batch is deleted by primary key, so no run
holds locks on, or bloats a transaction with, whatever has piled up.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ColumnElement, and_, delete, exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from ttelgo.models import (
    ApiUsageLog,
    IdempotencyRecord,
    Notification,
    NotificationStatus,
    WebhookEvent,
    WebhookEventStatus,
)
from ttelgo.models.identity import AuthSession, LoginFailure, PasswordReset, RefreshToken
from ttelgo.models.ops import RateLimitCounter


class Chore(StrEnum):
    API_USAGE = "api_usage"  # usage rows past API_USAGE_RETENTION_DAYS
    RATE_LIMIT_COUNTERS = "rate_limit_counters"  # windows that have ended
    IDEMPOTENCY_RECORDS = "idempotency_records"  # expired keys
    WEBHOOK_EVENTS = "webhook_events"  # inbound events handled (delivered or ignored) past their retention
    NOTIFICATIONS = "notifications"  # e-mails sent past their retention
    AUTH_SESSIONS = "auth_sessions"  # sessions none of whose refresh tokens can still be used
    PASSWORD_RESETS = "password_resets"  # reset codes past their expiry
    LOGIN_FAILURES = "login_failures"  # failure counts older than the lockout window, not locked


def _unrenewable_session(cutoff: datetime) -> ColumnElement[bool]:
    live_token = exists().where(RefreshToken.session_id == AuthSession.id, RefreshToken.expires_at >= cutoff)
    return and_(AuthSession.created_at < cutoff, ~live_token)


_CHORES: dict[Chore, tuple[InstrumentedAttribute[object], Callable[[datetime], ColumnElement[bool]]]] = {
    Chore.API_USAGE: (ApiUsageLog.id, lambda cutoff: ApiUsageLog.created_at < cutoff),
    Chore.RATE_LIMIT_COUNTERS: (RateLimitCounter.key, lambda cutoff: RateLimitCounter.expires_at < cutoff),
    Chore.IDEMPOTENCY_RECORDS: (IdempotencyRecord.id, lambda cutoff: IdempotencyRecord.expires_at < cutoff),
    Chore.WEBHOOK_EVENTS: (
        WebhookEvent.id,
        lambda cutoff: and_(
            WebhookEvent.status.in_((WebhookEventStatus.DELIVERED, WebhookEventStatus.IGNORED)),
            WebhookEvent.processed_at < cutoff,
        ),
    ),
    Chore.NOTIFICATIONS: (
        Notification.id,
        lambda cutoff: and_(Notification.status == NotificationStatus.SENT, Notification.sent_at < cutoff),
    ),
    Chore.AUTH_SESSIONS: (AuthSession.id, _unrenewable_session),  # its refresh tokens go with it (cascade)
    Chore.PASSWORD_RESETS: (PasswordReset.id, lambda cutoff: PasswordReset.expires_at < cutoff),
    Chore.LOGIN_FAILURES: (
        LoginFailure.key_hash,
        lambda cutoff: and_(
            LoginFailure.last_failure_at < cutoff,
            or_(LoginFailure.locked_until.is_(None), LoginFailure.locked_until < cutoff),
        ),
    ),
}


async def prune(session: AsyncSession, chore: Chore, cutoff: datetime, limit: int) -> int:
    """Deletes up to `limit` rows `chore` selects at `cutoff`; rows locked right now (a counter being hit,
    a login being checked) are left for the next run."""
    key, selects = _CHORES[chore]
    batch = select(key).where(selects(cutoff)).limit(limit).with_for_update(skip_locked=True)
    result = await session.execute(delete(key.class_).where(key.in_(batch.scalar_subquery())))
    return result.rowcount  # type: ignore[attr-defined]
