"""Request-scoped dependencies: the database session and who is calling (admin, customer, vendor user,
API key), each declared as an OpenAPI security scheme."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from ttelgo.auth import accounts, api_keys, sessions
from ttelgo.auth.accounts import Account
from ttelgo.auth.tokens import PrincipalKind, TokenClaims, TokenError, verify
from ttelgo.errors import AppError
from ttelgo.models import ApiKey, User, UserRole, Vendor, VendorStatus, VendorUser, VendorUserRole
from ttelgo.models.identity import AccountRealm
from ttelgo.settings import Settings

LAST_USED_RESOLUTION = timedelta(minutes=1)  # don't write last_used_at on every request
ROLE_RANK = {VendorUserRole.VIEWER: 0, VendorUserRole.DEVELOPER: 1, VendorUserRole.OWNER: 2}


async def db_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessions() as session:
        yield session


Session = Annotated[AsyncSession, Depends(db_session)]


def request_id(request: Request) -> str | None:
    """The id RequestIdMiddleware gave this request, for audit rows."""
    return getattr(request.state, "request_id", None)


def settings_of(request: Request) -> Settings:
    return request.app.state.settings


def _unauthenticated(detail: str, code: str = "UNAUTHENTICATED") -> AppError:
    return AppError(code, detail, headers={"WWW-Authenticate": "Bearer"})


# FastAPI's security classes read the headers, and declare the schemes in the OpenAPI document; with
# auto_error=False the dependencies below still answer every failure themselves (problem+json).
bearer_scheme = HTTPBearer(
    scheme_name="bearerAuth",
    bearerFormat="JWT",
    description="An access token from the login, vendor login or refresh endpoints.",
    auto_error=False,
)
api_key_scheme = APIKeyHeader(
    name="X-API-Key",
    scheme_name="apiKeyAuth",
    description="A vendor API key (`ttg_…`); `Authorization: Bearer ttg_…` is accepted too.",
    auto_error=False,
)
Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]
ApiKeyHeader = Annotated[str | None, Depends(api_key_scheme)]


def _claims(request: Request, bearer: HTTPAuthorizationCredentials | None) -> TokenClaims:
    if bearer is None:
        raise _unauthenticated("send an access token as 'Authorization: Bearer <token>'")
    try:
        return verify(bearer.credentials, str(settings_of(request).jwt_secret))
    except TokenError as exc:
        raise _unauthenticated(str(exc), exc.code) from exc


async def _live(session: AsyncSession, claims: TokenClaims) -> Account:
    """The token's account, if it is still active and the token's session has not ended (checked on every
    request, so deactivating an account or ending a session takes effect at once)."""
    realm = accounts.realm_of_kind(claims.kind)
    account = await accounts.active(session, realm, claims.subject)
    if account is None:
        raise _unauthenticated("the account behind this token is no longer active", "TOKEN_INVALID")
    if claims.session_id is None or not await sessions.is_open(session, claims.session_id, realm, account.id):
        raise _unauthenticated("this session has ended; log in again", "SESSION_REVOKED")
    return account


@dataclass(frozen=True)
class SessionCaller:
    """Any logged-in account (staff, customer, vendor team member) and the session its token names."""

    realm: AccountRealm
    account_id: uuid.UUID
    session_id: uuid.UUID


async def require_session(request: Request, session: Session, bearer: Bearer) -> SessionCaller:
    claims = _claims(request, bearer)
    account = await _live(session, claims)
    await session.commit()
    assert claims.session_id is not None  # _live checked it
    return SessionCaller(accounts.realm_of(account), account.id, claims.session_id)


@dataclass(frozen=True)
class AdminCaller:
    user_id: uuid.UUID
    email: str

    @property
    def actor(self) -> str:
        return f"admin:{self.user_id}"


async def require_admin(request: Request, session: Session, bearer: Bearer) -> AdminCaller:
    claims = _claims(request, bearer)
    if claims.kind is not PrincipalKind.ADMIN:
        raise AppError("FORBIDDEN", "this endpoint is for TTelGo staff")
    user = await _live(session, claims)
    if not isinstance(user, User) or user.role is not UserRole.ADMIN:
        raise _unauthenticated("the account behind this token is no longer an active admin", "TOKEN_INVALID")
    await session.commit()  # end the read, so the handler can open its own transaction on this session
    return AdminCaller(user.id, user.email)


async def require_user(request: Request, session: Session, bearer: Bearer) -> User:
    """A logged-in customer or staff member (users table)."""
    claims = _claims(request, bearer)
    if claims.kind not in (PrincipalKind.CUSTOMER, PrincipalKind.ADMIN):
        raise AppError("FORBIDDEN", "this endpoint is for customers")
    user = await _live(session, claims)
    assert isinstance(user, User)
    await session.commit()
    return user


@dataclass(frozen=True)
class VendorCaller:
    vendor_id: uuid.UUID
    role: VendorUserRole  # API keys act with developer rights
    api_key_id: uuid.UUID | None = None
    vendor_user_id: uuid.UUID | None = None

    @property
    def actor(self) -> str:
        return f"api_key:{self.api_key_id}" if self.api_key_id else f"vendor_user:{self.vendor_user_id}"

    @property
    def scope(self) -> str:
        return f"vendor:{self.vendor_id}"


def check_vendor(vendor: Vendor | None) -> Vendor:
    if vendor is None or vendor.deleted_at:
        raise _unauthenticated("the vendor behind these credentials no longer exists", "API_KEY_INVALID")
    if vendor.status is VendorStatus.SUSPENDED:
        raise AppError("VENDOR_SUSPENDED", "this vendor account is suspended; contact TTelGo")
    if vendor.status is not VendorStatus.APPROVED:
        raise AppError("VENDOR_NOT_APPROVED", "this vendor account is not approved yet")
    return vendor


async def _from_api_key(session: AsyncSession, plaintext: str) -> VendorCaller:
    key = await api_keys.live_key(session, plaintext)
    if key is None:
        raise _unauthenticated("the API key is invalid or revoked", "API_KEY_INVALID")
    check_vendor(await session.get(Vendor, key.vendor_id))
    now = datetime.now(UTC)
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        await session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now))
    await session.commit()
    return VendorCaller(key.vendor_id, VendorUserRole.DEVELOPER, api_key_id=key.id)


async def _from_vendor_token(session: AsyncSession, claims: TokenClaims) -> VendorCaller:
    if claims.kind is not PrincipalKind.VENDOR_USER or claims.vendor_id is None:
        raise AppError("FORBIDDEN", "this endpoint is for vendors")
    member = await _live(session, claims)
    assert isinstance(member, VendorUser)
    check_vendor(await session.get(Vendor, member.vendor_id))
    await session.commit()
    return VendorCaller(member.vendor_id, member.role, vendor_user_id=member.id)


async def require_vendor(
    request: Request, session: Session, header_key: ApiKeyHeader, bearer: Bearer
) -> VendorCaller:
    """An API key (X-API-Key, or Bearer ttg_…) or a vendor team member's access token."""
    presented = header_key or (bearer.credentials if bearer else None)
    if presented is None:
        raise _unauthenticated("send an API key in X-API-Key (or a vendor user's Bearer token)")
    if header_key or api_keys.prefix_of(presented):
        return await _from_api_key(session, presented)
    return await _from_vendor_token(session, _claims(request, bearer))


def vendor_role(minimum: VendorUserRole):  # type: ignore[no-untyped-def]
    """Dependency: a vendor caller with at least this role (owner > developer > viewer)."""

    async def dependency(caller: Annotated[VendorCaller, Depends(require_vendor)]) -> VendorCaller:
        if ROLE_RANK[caller.role] < ROLE_RANK[minimum]:
            raise AppError("FORBIDDEN", f"this needs the {minimum.value} role or higher")
        return caller

    return dependency


async def require_vendor_member(request: Request, session: Session, bearer: Bearer) -> VendorCaller:
    """Only a logged-in team member (not an API key): managing keys and the webhook URL."""
    return await _from_vendor_token(session, _claims(request, bearer))


Admin = Annotated[AdminCaller, Depends(require_admin)]
AnyVendor = Annotated[VendorCaller, Depends(require_vendor)]
AnySession = Annotated[SessionCaller, Depends(require_session)]
