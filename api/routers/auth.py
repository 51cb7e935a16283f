"""Logins: staff and customers (users), vendor team members (vendor_users). Both answer the same to a
wrong password and an unknown e-mail, and take as long."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, Request
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import Session, require_user
from api.schemas.auth import AccessToken, Login, Me, Refresh, Register
from ttelgo.auth.passwords import hash_password, verify_password
from ttelgo.auth.tokens import PrincipalKind, TokenClaims, TokenError, TokenUse, issue, verify
from ttelgo.errors import AppError
from ttelgo.models import User, UserRole, VendorUser

router = APIRouter(tags=["auth"])
Account = TypeVar("Account", User, VendorUser)
_DUMMY_HASH = hash_password("timing-equaliser")


def _token(request: Request, claims: TokenClaims, *, refreshable: bool = False) -> AccessToken:
    settings = request.app.state.settings
    ttl = timedelta(minutes=settings.jwt_access_ttl_minutes)
    refresh_ttl = timedelta(days=settings.jwt_refresh_ttl_days)
    return AccessToken(
        access_token=issue(claims, str(settings.jwt_secret), ttl),
        expires_in=int(ttl.total_seconds()),
        refresh_token=issue(claims, str(settings.jwt_secret), refresh_ttl, TokenUse.REFRESH)
        if refreshable
        else None,
    )


def _user_claims(user: User) -> TokenClaims:
    kind = PrincipalKind.ADMIN if user.role is UserRole.ADMIN else PrincipalKind.CUSTOMER
    return TokenClaims(user.id, kind, user.role.value)


async def _authenticate(session: AsyncSession, model: type[Account], body: Login) -> Account:
    """The live account with this e-mail and password; one answer, and the same work, for every failure."""
    account = await session.scalar(
        select(model).where(func.lower(model.email) == body.email.lower(), model.deleted_at.is_(None))
    )
    if (
        not verify_password(account.password_hash if account else _DUMMY_HASH, body.password)
        or account is None
    ):
        raise AppError("INVALID_CREDENTIALS")
    if not account.is_active:
        raise AppError("USER_INACTIVE")
    account.last_login_at = datetime.now(UTC)
    await session.commit()
    return account


@router.post("/api/v1/auth/login", response_model=AccessToken, summary="Log in as staff or a customer")
async def login(request: Request, body: Login, session: Session) -> AccessToken:
    return _token(request, _user_claims(await _authenticate(session, User, body)), refreshable=True)


@router.post(
    "/api/v1/auth/register", status_code=201, response_model=AccessToken, summary="Create a customer account"
)
async def register(request: Request, body: Register, session: Session) -> AccessToken:
    taken = await session.scalar(
        select(User.id).where(func.lower(User.email) == body.email.lower(), User.deleted_at.is_(None))
    )
    if taken:
        raise AppError("EMAIL_ALREADY_REGISTERED", "an account with this e-mail exists; log in instead")
    user = User(email=body.email, password_hash=hash_password(body.password), full_name=body.full_name)
    session.add(user)
    try:
        await session.commit()
    except IntegrityError as exc:  # the same e-mail registered concurrently
        raise AppError(
            "EMAIL_ALREADY_REGISTERED", "an account with this e-mail exists; log in instead"
        ) from exc
    return _token(request, _user_claims(user), refreshable=True)


@router.post(
    "/api/v1/auth/refresh", response_model=AccessToken, summary="A new token pair for a refresh token"
)
async def refresh(request: Request, body: Refresh, session: Session) -> AccessToken:
    try:
        claims = verify(body.refresh_token, str(request.app.state.settings.jwt_secret), TokenUse.REFRESH)
    except TokenError as exc:
        raise AppError(exc.code, str(exc)) from exc
    user = await session.get(User, claims.subject)
    if user is None or user.deleted_at or not user.is_active:
        raise AppError("TOKEN_INVALID", "the account behind this token is no longer active")
    return _token(request, _user_claims(user), refreshable=True)


@router.get("/api/v1/me", response_model=Me, summary="The logged-in customer or staff member")
async def me(caller: Annotated[User, Depends(require_user)]) -> Me:
    return Me(
        id=caller.id,
        email=caller.email,
        full_name=caller.full_name,
        role=caller.role.value,
        created_at=caller.created_at,
    )


@router.post(
    "/api/v1/vendor/auth/login", response_model=AccessToken, summary="Log in as a vendor team member"
)
async def vendor_login(request: Request, body: Login, session: Session) -> AccessToken:
    member = await _authenticate(session, VendorUser, body)
    return _token(
        request, TokenClaims(member.id, PrincipalKind.VENDOR_USER, member.role.value, member.vendor_id)
    )
