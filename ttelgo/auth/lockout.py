"""Progressive per-account login lockout, kept in the database so every API process shares it.

Failures are counted per e-mail and realm whether or not the account exists, so a lockout tells nothing
about which e-mails are registered. From the threshold on, each failure locks the e-mail for twice as long
as the one before (up to a cap); while locked, no password is even checked, the right one included. A
successful login clears the count.

Each attempt holds the e-mail's row lock while it checks the password, so attempts on one account are
taken one at a time: a burst cannot slip guesses past the count. An attempt that finds another one in
progress is refused at once rather than queued (queueing would let a flood hold database connections);
only the first attempts on an e-mail never seen before wait for each other, while its row is created.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from ttelgo.auth import opaque
from ttelgo.errors import AppError
from ttelgo.models.identity import AccountRealm, LoginFailure
from ttelgo.settings import Settings

LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL: FOR UPDATE NOWAIT found the row locked


@dataclass(frozen=True)
class LockoutPolicy:
    threshold: int
    base: timedelta
    cap: timedelta
    window: timedelta  # failures older than this are forgotten

    @classmethod
    def of(cls, settings: Settings) -> LockoutPolicy:
        return cls(
            threshold=settings.login_lockout_threshold,
            base=timedelta(seconds=settings.login_lockout_base_seconds),
            cap=timedelta(seconds=settings.login_lockout_max_seconds),
            window=timedelta(hours=settings.login_failure_window_hours),
        )

    def lock_after(self, failures: int) -> timedelta | None:
        if failures < self.threshold:
            return None
        return min(self.base * 2 ** min(failures - self.threshold, 32), self.cap)


def key_of(realm: AccountRealm, email: str) -> str:
    return opaque.digest(f"{realm.value}:{email.strip().lower()}")


def _refused(detail: str, retry_after_s: float) -> AppError:
    return AppError("RATE_LIMITED", detail, headers={"Retry-After": str(max(1, math.ceil(retry_after_s)))})


async def hold(db: AsyncSession, key: str) -> LoginFailure:
    """Locks the e-mail's row for this attempt (made if new); raises RATE_LIMITED while the e-mail is
    locked out or another attempt on it is in progress. Call in a transaction; the caller commits."""
    await db.execute(insert(LoginFailure).values(key_hash=key).on_conflict_do_nothing())
    try:
        row = await db.scalar(
            select(LoginFailure)
            .where(LoginFailure.key_hash == key)
            .with_for_update(nowait=True)
            .execution_options(populate_existing=True)
        )
    except DBAPIError as exc:
        if getattr(exc.orig, "pgcode", None) != LOCK_NOT_AVAILABLE:
            raise
        await db.rollback()
        raise _refused("another login for this account is in progress; try again", 1) from None
    assert row is not None
    locked_for = (row.locked_until - datetime.now(UTC)).total_seconds() if row.locked_until else 0
    if locked_for > 0:
        await db.rollback()
        raise _refused(
            "too many failed logins: this account is locked for a while; try again later or reset the "
            "password",
            locked_for,
        )
    return row


def record_failure(row: LoginFailure, policy: LockoutPolicy) -> None:
    now = datetime.now(UTC)
    recent = row.last_failure_at is not None and now - row.last_failure_at < policy.window
    row.failures = (row.failures if recent else 0) + 1
    row.last_failure_at = now
    lock = policy.lock_after(row.failures)
    row.locked_until = now + lock if lock else None


async def clear(db: AsyncSession, key: str) -> None:
    await db.execute(delete(LoginFailure).where(LoginFailure.key_hash == key))
