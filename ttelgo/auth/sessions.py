"""Login sessions: a family of single-use refresh tokens, rotated on every refresh.

A refresh token is exchanged once; the exchange marks it used and issues the next token of the same
session. A used token that comes back means two parties hold the session's tokens (a stolen token, or a
client that lost the newer one), so the whole session is ended: both must log in again (OAuth 2.0
Security BCP, refresh token rotation). Access tokens name their session, so ending it refuses them too.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ttelgo.auth import opaque
from ttelgo.auth.tokens import TokenError
from ttelgo.models.identity import AccountRealm, AuthSession, RefreshToken, SessionEnd

REFRESH_MARKER = "ttr_"


async def _next_token(db: AsyncSession, session_id: uuid.UUID, ttl: timedelta) -> str:
    plaintext, token_hash = opaque.generate(REFRESH_MARKER)
    db.add(RefreshToken(session_id=session_id, token_hash=token_hash, expires_at=datetime.now(UTC) + ttl))
    await db.flush()
    return plaintext


async def open_session(
    db: AsyncSession, realm: AccountRealm, principal_id: uuid.UUID, ttl: timedelta
) -> tuple[AuthSession, str]:
    """A new session and its first refresh token (the caller commits)."""
    session = AuthSession(realm=realm, principal_id=principal_id)
    db.add(session)
    await db.flush()
    return session, await _next_token(db, session.id, ttl)


async def rotate(db: AsyncSession, plaintext: str, ttl: timedelta) -> tuple[AuthSession, str]:
    """The session of a live refresh token and its next token; the presented one is used up (the caller
    commits). A reused token ends its session, committed here, before the TokenError."""
    token = await db.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == opaque.digest(plaintext)).with_for_update()
    )
    if token is None:
        raise TokenError("TOKEN_INVALID", "the refresh token is invalid")
    session = await db.get(AuthSession, token.session_id, with_for_update=True)
    assert session is not None  # the foreign key
    if session.revoked_at is not None:
        raise TokenError("SESSION_REVOKED", "this session has ended; log in again")
    if token.used_at is not None:
        await end(db, session.id, SessionEnd.TOKEN_REUSE)
        await db.commit()
        raise TokenError(
            "SESSION_REVOKED", "this refresh token was used before, so its session has ended; log in again"
        )
    now = datetime.now(UTC)
    if token.expires_at <= now:
        raise TokenError("TOKEN_EXPIRED", "the refresh token has expired; log in again")
    token.used_at = now
    return session, await _next_token(db, session.id, ttl)


async def end(db: AsyncSession, session_id: uuid.UUID, reason: SessionEnd) -> None:
    await db.execute(
        update(AuthSession)
        .where(AuthSession.id == session_id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC), revoked_reason=reason)
    )


async def end_all(db: AsyncSession, realm: AccountRealm, principal_id: uuid.UUID, reason: SessionEnd) -> int:
    """Ends every open session of the account; how many there were."""
    ended = await db.execute(
        update(AuthSession)
        .where(
            AuthSession.realm == realm,
            AuthSession.principal_id == principal_id,
            AuthSession.revoked_at.is_(None),
        )
        .values(revoked_at=datetime.now(UTC), revoked_reason=reason)
    )
    return ended.rowcount  # type: ignore[attr-defined,no-any-return]


async def is_open(
    db: AsyncSession, session_id: uuid.UUID, realm: AccountRealm, principal_id: uuid.UUID
) -> bool:
    """The session exists, belongs to this account and has not ended."""
    return bool(
        await db.scalar(
            select(AuthSession.id).where(
                AuthSession.id == session_id,
                AuthSession.realm == realm,
                AuthSession.principal_id == principal_id,
                AuthSession.revoked_at.is_(None),
            )
        )
    )
