"""Password resets by e-mailed single-use token.

A request writes the reset (its token hashed) and, in the same transaction, its message to the e-mail
outbox (`notifications`, sent by the Notification workflow, which carries only the row id). The outbox
row holds the token until the reset is used, when it is blanked; an unused one expires with the token.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from ttelgo.auth import opaque
from ttelgo.auth.accounts import Account, realm_of
from ttelgo.errors import AppError
from ttelgo.models import Notification, NotificationChannel, User, VendorUser
from ttelgo.models.identity import PasswordReset

RESET_MARKER = "ttp_"
TEMPLATE = "password_reset"
RESEND_AFTER = timedelta(minutes=1)  # one e-mail a minute per account, however often it is asked for


def _dedupe_key(reset_id: uuid.UUID) -> str:
    return f"{reset_id}:{TEMPLATE}"


async def request(
    db: AsyncSession, account: Account, *, ttl: timedelta, url: str | None
) -> Notification | None:
    """The queued e-mail for a new reset of `account`, or None when one was sent within RESEND_AFTER
    (the caller commits, then starts the notification's delivery)."""
    realm, now = realm_of(account), datetime.now(UTC)
    recent = await db.scalar(
        select(PasswordReset.id).where(
            PasswordReset.realm == realm,
            PasswordReset.principal_id == account.id,
            PasswordReset.created_at > now - RESEND_AFTER,
        )
    )
    if recent:
        return None
    token, token_hash = opaque.generate(RESET_MARKER)
    reset = PasswordReset(realm=realm, principal_id=account.id, token_hash=token_hash, expires_at=now + ttl)
    db.add(reset)
    await db.flush()
    link = f"{url}{'&' if '?' in url else '?'}{urlencode({'token': token})}" if url else ""
    key = _dedupe_key(reset.id)
    await db.execute(
        insert(Notification)
        .values(
            dedupe_key=key,
            user_id=account.id if isinstance(account, User) else None,
            vendor_id=account.vendor_id if isinstance(account, VendorUser) else None,
            channel=NotificationChannel.EMAIL,
            template=TEMPLATE,
            recipient=account.email,
            payload={
                "token": token,
                "link": f"Or open {link}" if link else "",
                "minutes": round(ttl.total_seconds() / 60),
            },
        )
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
    )
    return await db.scalar(select(Notification).where(Notification.dedupe_key == key))


async def consume(db: AsyncSession, token: str) -> PasswordReset:
    """Uses up a live reset token, with every other open reset of its account, and blanks the token in
    their e-mails (the caller commits). Raises RESET_TOKEN_INVALID for an unknown, used or expired one."""
    reset = await db.scalar(
        select(PasswordReset).where(PasswordReset.token_hash == opaque.digest(token)).with_for_update()
    )
    now = datetime.now(UTC)
    if reset is None or reset.used_at is not None or reset.expires_at <= now:
        raise AppError(
            "RESET_TOKEN_INVALID", "this reset link is invalid, used or expired; ask for a new one"
        )
    used = await db.scalars(
        update(PasswordReset)
        .where(
            PasswordReset.realm == reset.realm,
            PasswordReset.principal_id == reset.principal_id,
            PasswordReset.used_at.is_(None),
        )
        .values(used_at=now)
        .returning(PasswordReset.id)
    )
    await db.execute(
        update(Notification)
        .where(Notification.dedupe_key.in_([_dedupe_key(reset_id) for reset_id in used]))
        .values(payload={"token": "(used)", "link": "", "minutes": 0})
    )
    return reset
