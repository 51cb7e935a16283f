"""Deactivating a login account (a customer, a vendor team member): a soft delete — `deleted_at` set, the
row and everything that points at it kept — and every session ended, in the caller's transaction with
its audit row. api/deps.py reads the account on every request, so its very next call is refused.

Reactivation (an admin's, of an account or of a whole vendor) clears `deleted_at`, so the account can log
in again. What deactivation revoked stays revoked: its sessions (and their refresh tokens) and a vendor's
API keys were in someone's hands when it was switched off, so the account starts again from a fresh
login, and the vendor from new keys. A vendor's reactivation brings back the team members deactivated
with it (same instant), not those deactivated on their own before."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ttelgo.audit import record_action
from ttelgo.auth import accounts, sessions
from ttelgo.auth.accounts import Account
from ttelgo.errors import AppError
from ttelgo.models import User, UserRole, Vendor, VendorUser
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


async def reactivate_account(
    session: AsyncSession,
    account: Account,
    *,
    actor: str,
    reason: str | None,
    request_id: str | None,
) -> None:
    """Logins work again (the sessions deactivation ended stay ended). 409 when the account is live, or
    when another live account has taken its e-mail meanwhile."""
    realm = accounts.realm_of(account)
    if account.deleted_at is None:
        raise AppError("NOT_DEACTIVATED", f"{realm.value} {account.id} is not deactivated")
    deactivated_at = account.deleted_at
    account.deleted_at = None
    await _flush_unique(session, "EMAIL_ALREADY_REGISTERED", f"another live account uses {account.email}")
    record_action(
        session,
        actor=actor,
        action=f"{realm.value}.reactivate",
        target_type=realm.value,
        target_id=account.id,
        before={"email": account.email, "deleted_at": deactivated_at.isoformat()},
        after={"deleted_at": None},
        reason=reason,
        request_id=request_id,
    )


async def reactivate_vendor(
    session: AsyncSession, vendor: Vendor, *, actor: str, reason: str | None, request_id: str | None
) -> int:
    """The vendor trades again under its old status; its keys stay revoked. Answers how many team members
    came back with it."""
    if vendor.deleted_at is None:
        raise AppError("NOT_DEACTIVATED", f"vendor {vendor.id} is not deactivated")
    deactivated_at = vendor.deleted_at
    vendor.deleted_at = None
    await _flush_unique(session, "VENDOR_ALREADY_EXISTS", f"a live vendor uses {vendor.contact_email}")
    members = await session.scalars(
        select(VendorUser)
        .where(VendorUser.vendor_id == vendor.id, VendorUser.deleted_at == deactivated_at)
        .with_for_update()
    )
    team = members.all()
    for member in team:
        await reactivate_account(session, member, actor=actor, reason=reason, request_id=request_id)
    record_action(
        session,
        actor=actor,
        action="vendor.reactivate",
        target_type="vendor",
        target_id=vendor.id,
        before={"deleted_at": deactivated_at.isoformat()},
        after={"deleted_at": None, "members_reactivated": len(team), "api_keys_reactivated": 0},
        reason=reason,
        request_id=request_id,
    )
    return len(team)


async def _flush_unique(session: AsyncSession, code: str, detail: str) -> None:
    """The e-mail indexes are unique among live rows only: one taken while this row was deleted clashes."""
    try:
        await session.flush()
    except IntegrityError as exc:
        raise AppError(code, detail) from exc


async def any_vendor(session: AsyncSession, vendor_id: uuid.UUID) -> Vendor:
    """The vendor, locked, live or deactivated."""
    vendor = await session.scalar(select(Vendor).where(Vendor.id == vendor_id).with_for_update())
    if vendor is None:
        raise AppError("VENDOR_NOT_FOUND", f"no vendor {vendor_id}")
    return vendor


async def any_customer(session: AsyncSession, user_id: uuid.UUID) -> User:
    """The customer (not staff: admins are managed elsewhere), locked, live or deactivated."""
    user = await session.scalar(
        select(User).where(User.id == user_id, User.role == UserRole.CUSTOMER).with_for_update()
    )
    if user is None:
        raise AppError("USER_NOT_FOUND", f"no customer {user_id}")
    return user


async def live_customer(session: AsyncSession, user_id: uuid.UUID) -> User:
    """The customer, locked, unless deleted."""
    user = await any_customer(session, user_id)
    if user.deleted_at is not None:
        raise AppError("USER_NOT_FOUND", f"no customer {user_id}")
    return user


async def any_member(session: AsyncSession, vendor_id: uuid.UUID, member_id: uuid.UUID) -> VendorUser:
    """The vendor's team member, locked, live or deactivated; another vendor's member looks missing."""
    member = await session.scalar(
        select(VendorUser)
        .where(VendorUser.id == member_id, VendorUser.vendor_id == vendor_id)
        .with_for_update()
    )
    if member is None:
        raise AppError("NOT_FOUND", f"no team member {member_id} for this vendor")
    return member


async def live_member(session: AsyncSession, vendor_id: uuid.UUID, member_id: uuid.UUID) -> VendorUser:
    """The vendor's team member, locked, unless deleted."""
    member = await any_member(session, vendor_id, member_id)
    if member.deleted_at is not None:
        raise AppError("NOT_FOUND", f"no team member {member_id} for this vendor")
    return member
