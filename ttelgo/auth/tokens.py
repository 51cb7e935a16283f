"""Short-lived access tokens (HS256 JWT) for staff, customers and vendor team members."""

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


class TokenUse(StrEnum):
    ACCESS = "access"  # sent with every request, short-lived
    REFRESH = "refresh"  # only exchanged for a new pair at /auth/refresh


class TokenError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code  # TOKEN_INVALID or TOKEN_EXPIRED


def issue(claims: TokenClaims, secret: str, ttl: timedelta, use: TokenUse = TokenUse.ACCESS) -> str:
    now = datetime.now(UTC)
    payload = {
        "iss": ISSUER,
        "use": use.value,
        "sub": str(claims.subject),
        "typ": claims.kind.value,
        "role": claims.role,
        "iat": now,
        "exp": now + ttl,
        "jti": uuid.uuid4().hex,
    }
    if claims.vendor_id:
        payload["vid"] = str(claims.vendor_id)
    return jwt.encode(payload, secret, algorithm="HS256")


def verify(token: str, secret: str, use: TokenUse = TokenUse.ACCESS) -> TokenClaims:
    """A refresh token is never accepted as an access token, nor the other way round."""
    try:
        payload = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            issuer=ISSUER,
            options={"require": ["exp", "sub", "typ", "use"]},
        )
        if payload["use"] != use.value:
            raise ValueError(f"a {payload['use']} token was sent where a {use.value} token belongs")
        return TokenClaims(
            subject=uuid.UUID(payload["sub"]),
            kind=PrincipalKind(payload["typ"]),
            role=str(payload.get("role", "")),
            vendor_id=uuid.UUID(payload["vid"]) if payload.get("vid") else None,
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenError("TOKEN_EXPIRED", f"the {use.value} token has expired") from exc
    except (jwt.PyJWTError, ValueError, KeyError) as exc:
        raise TokenError("TOKEN_INVALID", f"the {use.value} token is invalid") from exc
