"""Short-lived access tokens (HS256 JWT) for staff, customers and vendor team members.

Each names the login session it belongs to (`sid`, see `ttelgo.auth.sessions`), so ending the session ends
its access tokens at once; refresh tokens are opaque and stored hashed, not JWTs.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import jwt

ISSUER = "ttelgo"


class PrincipalKind(StrEnum):
    ADMIN = "admin"
    CUSTOMER = "customer"
    VENDOR_USER = "vendor_user"


@dataclass(frozen=True)
class TokenClaims:
    subject: uuid.UUID
    kind: PrincipalKind
    role: str
    vendor_id: uuid.UUID | None = None
    session_id: uuid.UUID | None = None


# Every JWT we issue is an access token (refresh tokens are opaque, `sessions`); the claim keeps refusing
# the refresh JWTs issued before sessions existed.
ACCESS_USE = "access"


class TokenError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code  # TOKEN_INVALID, TOKEN_EXPIRED or SESSION_REVOKED


def issue(claims: TokenClaims, secret: str, ttl: timedelta) -> str:
    now = datetime.now(UTC)
    payload = {
        "iss": ISSUER,
        "use": ACCESS_USE,
        "sub": str(claims.subject),
        "typ": claims.kind.value,
        "role": claims.role,
        "iat": now,
        "exp": now + ttl,
        "jti": uuid.uuid4().hex,
    }
    if claims.vendor_id:
        payload["vid"] = str(claims.vendor_id)
    if claims.session_id:
        payload["sid"] = str(claims.session_id)
    return jwt.encode(payload, secret, algorithm="HS256")


def verify(token: str, secret: str) -> TokenClaims:
    """Only an access token signed with `secret`, unexpired."""
    try:
        payload = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            issuer=ISSUER,
            options={"require": ["exp", "sub", "typ", "use"]},
        )
        if payload["use"] != ACCESS_USE:
            raise ValueError(f"a {payload['use']} token was sent where an access token belongs")
        return TokenClaims(
            subject=uuid.UUID(payload["sub"]),
            kind=PrincipalKind(payload["typ"]),
            role=str(payload.get("role", "")),
            vendor_id=uuid.UUID(payload["vid"]) if payload.get("vid") else None,
            session_id=uuid.UUID(payload["sid"]) if payload.get("sid") else None,
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenError("TOKEN_EXPIRED", "the access token has expired") from exc
    except (jwt.PyJWTError, ValueError, KeyError) as exc:
        raise TokenError("TOKEN_INVALID", "the access token is invalid") from exc
