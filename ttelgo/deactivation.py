"""Deactivating a login account (a customer, a vendor team member): a soft delete — `deleted_at` set, the
row and everything that points at it kept — and every session ended, in the caller's transaction with
its audit row. api/deps.py reads the account on every request, so its very next call is refused."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ttelgo.audit import record_action
from ttelgo.auth import accounts, sessions
from ttelgo.auth.accounts import Account
from ttelgo.errors import AppError
from ttelgo.models import User, UserRole, VendorUser
from ttelgo.models.identity import SessionEnd


async def deactivate_account(
    session: AsyncSession,
    account: Account,
    *,
    actor: str,
    reason: str | None,
    request_id: str | None,
    now: datetime | None = None,
) -> int:
    """Answers how many sessions it ended."""
    account.deleted_at = now or datetime.now(UTC)
    realm = accounts.realm_of(account)
    ended = await sessions.end_all(session, realm, account.id, SessionEnd.DEACTIVATED)
    record_action(
        session,
        actor=actor,
        action=f"{realm.value}.deactivate",
        target_type=realm.value,
        target_id=account.id,
        before={"email": account.email},
        after={"deleted_at": account.deleted_at.isoformat(), "sessions_ended": ended},
        reason=reason,
        request_id=request_id,
    )
    return ended


async def live_customer(session: AsyncSession, user_id: uuid.UUID) -> User:
    """The customer (not staff: admins are managed elsewhere), locked, unless deleted."""
    user = await session.scalar(
        select(User)
        .where(User.id == user_id, User.role == UserRole.CUSTOMER, User.deleted_at.is_(None))
        .with_for_update()
    )
    if user is None:
        raise AppError("USER_NOT_FOUND", f"no customer {user_id}")
    return user


async def live_member(session: AsyncSession, vendor_id: uuid.UUID, member_id: uuid.UUID) -> VendorUser:
    """The vendor's team member, locked, unless deleted; another vendor's member looks like a missing one."""
    member = await session.scalar(
        select(VendorUser)
        .where(VendorUser.id == member_id, VendorUser.vendor_id == vendor_id, VendorUser.deleted_at.is_(None))
        .with_for_update()
    )
    if member is None:
        raise AppError("NOT_FOUND", f"no team member {member_id} for this vendor")
    return member
