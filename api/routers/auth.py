"""Logins: staff and customers (users), vendor team members (vendor_users). Both answer the same to a
wrong password and an unknown e-mail, and take as long."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TypeVar

from fastapi import APIRouter, Request
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import Session
from api.schemas.auth import AccessToken, Login
from ttelgo.auth.passwords import hash_password, verify_password
from ttelgo.auth.tokens import PrincipalKind, TokenClaims, issue
from ttelgo.errors import AppError
from ttelgo.models import User, UserRole, VendorUser

router = APIRouter(tags=["auth"])
Account = TypeVar("Account", User, VendorUser)
_DUMMY_HASH = hash_password("timing-equaliser")


def _token(request: Request, claims: TokenClaims) -> AccessToken:
    settings = request.app.state.settings
    ttl = timedelta(minutes=settings.jwt_access_ttl_minutes)
    return AccessToken(
        access_token=issue(claims, str(settings.jwt_secret), ttl), expires_in=int(ttl.total_seconds())
    )


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
    user = await _authenticate(session, User, body)
    kind = PrincipalKind.ADMIN if user.role is UserRole.ADMIN else PrincipalKind.CUSTOMER
    return _token(request, TokenClaims(user.id, kind, user.role.value))


@router.post(
    "/api/v1/vendor/auth/login", response_model=AccessToken, summary="Log in as a vendor team member"
)
async def vendor_login(request: Request, body: Login, session: Session) -> AccessToken:
    member = await _authenticate(session, VendorUser, body)
    return _token(
        request, TokenClaims(member.id, PrincipalKind.VENDOR_USER, member.role.value, member.vendor_id)
    )
