"""Vendor administration: onboarding, status, billing terms, API keys and team members.

Every function works inside the caller's transaction and writes its audit row there too.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ttelgo import ledger
from ttelgo.audit import record_action
from ttelgo.auth import api_keys
from ttelgo.auth.passwords import hash_password
from ttelgo.deactivation import deactivate_account
from ttelgo.errors import AppError
from ttelgo.models import ApiKey, BillingMode, Vendor, VendorStatus, VendorUser, VendorUserRole
from ttelgo.webhooks.signing import ROTATION_OVERLAP_HOURS
from ttelgo.webhooks.signing import new_secret as new_webhook_secret

CATALOGUE_CURRENCY = "USD"  # the supplier prices in USD and so does every wallet, for now


def vendor_view(vendor: Vendor) -> dict[str, Any]:
    return {
        "name": vendor.name,
        "contact_email": vendor.contact_email,
        "status": vendor.status.value,
        "billing_mode": vendor.billing_mode.value,
        "credit_limit_minor": vendor.credit_limit_minor,
        "markup_bps": vendor.markup_bps,
        "low_balance_threshold_minor": vendor.low_balance_threshold_minor,
    }


def _audit_change(
    session: AsyncSession,
    vendor: Vendor,
    action: str,
    before: dict[str, Any],
    *,
    actor: str,
    request_id: str | None,
    reason: str | None = None,
) -> None:
    record_action(
        session,
        actor=actor,
        action=action,
        target_type="vendor",
        target_id=vendor.id,
        before=before,
        after=vendor_view(vendor),
        reason=reason,
        request_id=request_id,
    )


async def _refuse_taken_email(
    session: AsyncSession, contact_email: str, *, other_than: uuid.UUID | None = None
) -> None:
    """Contact e-mails are unique, case-insensitively, among live vendors (as the database's index says)."""
    query = select(Vendor.id).where(
        func.lower(Vendor.contact_email) == contact_email.lower(), Vendor.deleted_at.is_(None)
    )
    if other_than is not None:
        query = query.where(Vendor.id != other_than)
    if await session.scalar(query):
        raise AppError("VENDOR_ALREADY_EXISTS", f"a vendor with e-mail {contact_email} exists")


async def get_vendor(session: AsyncSession, vendor_id: uuid.UUID, *, lock: bool = False) -> Vendor:
    query = select(Vendor).where(Vendor.id == vendor_id, Vendor.deleted_at.is_(None))
    vendor = await session.scalar(query.with_for_update() if lock else query)
    if vendor is None:
        raise AppError("VENDOR_NOT_FOUND", f"no vendor {vendor_id}")
    return vendor


async def create_vendor(
    session: AsyncSession,
    *,
    actor: str,
    name: str,
    contact_email: str,
    billing_mode: BillingMode,
    credit_limit_minor: int,
    currency: str,
    markup_bps: int | None,
    request_id: str | None,
) -> Vendor:
    if currency != CATALOGUE_CURRENCY:
        raise AppError(
            "VALIDATION_ERROR", f"wallets are kept in {CATALOGUE_CURRENCY}, the catalogue's currency"
        )
    await _refuse_taken_email(session, contact_email)
    vendor = Vendor(
        name=name,
        contact_email=contact_email,
        billing_mode=billing_mode,
        credit_limit_minor=credit_limit_minor,
        currency=currency,
        markup_bps=markup_bps,
    )
    session.add(vendor)
    await session.flush()
    await ledger.vendor_wallet(session, vendor.id, currency)
    record_action(
        session,
        actor=actor,
        action="vendor.create",
        target_type="vendor",
        target_id=vendor.id,
        after=vendor_view(vendor),
        request_id=request_id,
    )
    return vendor


async def set_status(
    session: AsyncSession,
    vendor: Vendor,
    status: VendorStatus,
    *,
    actor: str,
    reason: str | None,
    request_id: str | None,
) -> Vendor:
    before = vendor_view(vendor)
    vendor.status = status
    now = datetime.now(UTC)
    if status is VendorStatus.APPROVED:
        vendor.approved_at, vendor.suspended_at = vendor.approved_at or now, None
    elif status is VendorStatus.SUSPENDED:
        vendor.suspended_at = now
    _audit_change(
        session,
        vendor,
        f"vendor.{status.value.lower()}",
        before,
        actor=actor,
        request_id=request_id,
        reason=reason,
    )
    return vendor


PROFILE_FIELDS = ("name", "contact_email", "low_balance_threshold_minor")


async def update_profile(
    session: AsyncSession,
    vendor: Vendor,
    changes: dict[str, Any],
    *,
    actor: str,
    request_id: str | None,
    action: str = "vendor.update",
) -> Vendor:
    """Changes the given PROFILE_FIELDS (`low_balance_threshold_minor` None: no alert); one audit row
    with before and after."""
    if "contact_email" in changes:
        await _refuse_taken_email(session, changes["contact_email"], other_than=vendor.id)
    before = vendor_view(vendor)
    for field in PROFILE_FIELDS:
        if field in changes:
            setattr(vendor, field, changes[field])
    _audit_change(session, vendor, action, before, actor=actor, request_id=request_id)
    return vendor


async def reject(
    session: AsyncSession, vendor: Vendor, *, actor: str, reason: str | None, request_id: str | None
) -> Vendor:
    """Turns down a PENDING application; a vendor that has traded is suspended or deactivated instead."""
    if vendor.status is not VendorStatus.PENDING:
        raise AppError(
            "CONFLICT", f"only a PENDING application can be rejected; this one is {vendor.status.value}"
        )
    return await set_status(
        session, vendor, VendorStatus.REJECTED, actor=actor, reason=reason, request_id=request_id
    )


async def deactivate(
    session: AsyncSession, vendor: Vendor, *, actor: str, reason: str | None, request_id: str | None
) -> Vendor:
    """A soft delete: the vendor, its orders and ledger stay; its API keys are revoked and its team
    deactivated (sessions ended), so every key and token is refused on its next call."""
    now = datetime.now(UTC)
    before = vendor_view(vendor)
    vendor.deleted_at = now
    revoked = await session.execute(
        update(ApiKey)
        .where(ApiKey.vendor_id == vendor.id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    members = await session.scalars(
        select(VendorUser).where(VendorUser.vendor_id == vendor.id, VendorUser.deleted_at.is_(None))
    )
    for member in members.all():
        await deactivate_account(session, member, actor=actor, reason=reason, request_id=request_id, now=now)
    record_action(
        session,
        actor=actor,
        action="vendor.deactivate",
        target_type="vendor",
        target_id=vendor.id,
        before=before,
        after={"deleted_at": now.isoformat(), "api_keys_revoked": revoked.rowcount},  # type: ignore[attr-defined]
        reason=reason,
        request_id=request_id,
    )
    return vendor


async def set_billing(
    session: AsyncSession,
    vendor: Vendor,
    *,
    billing_mode: BillingMode,
    credit_limit_minor: int,
    actor: str,
    request_id: str | None,
) -> Vendor:
    before = vendor_view(vendor)
    vendor.billing_mode, vendor.credit_limit_minor = billing_mode, credit_limit_minor
    await session.flush()
    await ledger.sync_wallet_limits(session, vendor)
    _audit_change(session, vendor, "vendor.billing", before, actor=actor, request_id=request_id)
    return vendor


async def set_markup(
    session: AsyncSession, vendor: Vendor, *, markup_bps: int | None, actor: str, request_id: str | None
) -> Vendor:
    before = vendor_view(vendor)
    vendor.markup_bps = markup_bps
    _audit_change(session, vendor, "vendor.markup", before, actor=actor, request_id=request_id)
    return vendor


def set_webhook(
    session: AsyncSession,
    vendor: Vendor,
    *,
    url: str | None,
    actor: str,
    request_id: str | None,
    events: list[str] | None = None,
) -> str | None:
    """Points vendor events at `url` (for the `events` types; None means all). Answers the signing
    secret when one was made (the first URL; shown once), None when the current secret stays (rotate it
    with `rotate_webhook_secret`) or the URL is cleared (and the secrets with it)."""
    before = {"webhook_url": vendor.webhook_url, "webhook_events": vendor.webhook_events}
    vendor.webhook_url = url
    vendor.webhook_events = sorted(set(events)) if events is not None and url else None
    made = None
    if not url:
        vendor.webhook_secret = vendor.webhook_previous_secret = None
        vendor.webhook_previous_secret_expires_at = None
    elif not vendor.webhook_secret:
        vendor.webhook_secret = made = new_webhook_secret()
    record_action(
        session,
        actor=actor,
        action="vendor.webhook",
        target_type="vendor",
        target_id=vendor.id,
        before=before,
        after={"webhook_url": url, "webhook_events": vendor.webhook_events, "new_secret": made is not None},
        request_id=request_id,
    )
    return made


def rotate_webhook_secret(
    session: AsyncSession, vendor: Vendor, *, actor: str, request_id: str | None, now: datetime | None = None
) -> str:
    """A new signing secret; the old one keeps signing alongside it for ROTATION_OVERLAP_HOURS."""
    if not vendor.webhook_url or not vendor.webhook_secret:
        raise AppError("CONFLICT", "set a webhook URL first")
    now = now or datetime.now(UTC)
    vendor.webhook_previous_secret = vendor.webhook_secret
    vendor.webhook_previous_secret_expires_at = now + timedelta(hours=ROTATION_OVERLAP_HOURS)
    vendor.webhook_secret = new_webhook_secret()
    record_action(
        session,
        actor=actor,
        action="vendor.webhook_rotate_secret",
        target_type="vendor",
        target_id=vendor.id,
        after={"previous_secret_expires_at": vendor.webhook_previous_secret_expires_at.isoformat()},
        request_id=request_id,
    )
    return vendor.webhook_secret


async def issue_api_key(
    session: AsyncSession,
    vendor: Vendor,
    *,
    name: str,
    actor: str,
    request_id: str | None,
    created_by_user_id: uuid.UUID | None = None,
    created_by_vendor_user_id: uuid.UUID | None = None,
) -> tuple[ApiKey, str]:
    """Returns the row and the plaintext key, which exists nowhere else and is shown once."""
    new = api_keys.generate()
    key = ApiKey(
        vendor_id=vendor.id,
        name=name,
        prefix=new.prefix,
        key_hash=new.key_hash,
        created_by_user_id=created_by_user_id,
        created_by_vendor_user_id=created_by_vendor_user_id,
    )
    session.add(key)
    await session.flush()
    record_action(
        session,
        actor=actor,
        action="api_key.create",
        target_type="api_key",
        target_id=key.id,
        after={"vendor_id": str(vendor.id), "prefix": key.prefix, "name": name},
        request_id=request_id,
    )
    return key, new.plaintext


async def revoke_api_key(
    session: AsyncSession, vendor_id: uuid.UUID, key_id: uuid.UUID, *, actor: str, request_id: str | None
) -> ApiKey:
    key = await session.scalar(select(ApiKey).where(ApiKey.id == key_id, ApiKey.vendor_id == vendor_id))
    if key is None:
        raise AppError("NOT_FOUND", f"no API key {key_id} for this vendor")
    if key.revoked_at is None:
        key.revoked_at = datetime.now(UTC)
        record_action(
            session,
            actor=actor,
            action="api_key.revoke",
            target_type="api_key",
            target_id=key.id,
            after={"prefix": key.prefix},
            request_id=request_id,
        )
    return key


async def add_member(
    session: AsyncSession,
    vendor: Vendor,
    *,
    email: str,
    password: str,
    role: VendorUserRole,
    actor: str,
    request_id: str | None,
) -> VendorUser:
    taken = await session.scalar(
        select(VendorUser.id).where(
            func.lower(VendorUser.email) == email.lower(), VendorUser.deleted_at.is_(None)
        )
    )
    if taken:
        raise AppError("EMAIL_ALREADY_REGISTERED", f"{email} already belongs to a vendor team")
    member = VendorUser(vendor_id=vendor.id, email=email, password_hash=hash_password(password), role=role)
    session.add(member)
    await session.flush()
    record_action(
        session,
        actor=actor,
        action="vendor_user.create",
        target_type="vendor_user",
        target_id=member.id,
        after={"email": email, "role": role.value},
        request_id=request_id,
    )
    return member
