"""Logins: staff and customers (users), vendor team members (vendor_users); sessions (refresh, logout) and
password resets for both. A wrong password and an unknown e-mail get the same answer, take as long, and
count towards the same lockout."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, FastAPI, Request, Response
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.concurrency import run_in_threadpool
from temporalio.common import WorkflowIDConflictPolicy

from activities.contracts import NOTIFICATION_WORKFLOW, Delivery, notification_workflow_id
from api.deps import AnySession, Session, check_vendor, require_user
from api.schemas.auth import (
    AccessToken,
    Login,
    Me,
    Refresh,
    Register,
    ResetConfirm,
    ResetRequest,
    ResetRequested,
)
from ttelgo.auth import accounts, lockout, resets, sessions
from ttelgo.auth.accounts import Account
from ttelgo.auth.passwords import hash_password, verify_password
from ttelgo.auth.tokens import TokenError, issue
from ttelgo.errors import AppError
from ttelgo.models import NotificationStatus, User, Vendor, VendorUser
from ttelgo.models.identity import AccountRealm, SessionEnd
from ttelgo.settings import Settings

router = APIRouter(tags=["auth"])
log = logging.getLogger(__name__)
_DUMMY_HASH = hash_password("timing-equaliser")


def _refresh_ttl(settings: Settings) -> timedelta:
    return timedelta(days=settings.jwt_refresh_ttl_days)


def _pair(settings: Settings, account: Account, session_id: uuid.UUID, refresh_token: str) -> AccessToken:
    ttl = timedelta(minutes=settings.jwt_access_ttl_minutes)
    claims = accounts.claims_for(account, session_id)
    return AccessToken(
        access_token=issue(claims, str(settings.jwt_secret), ttl),
        expires_in=int(ttl.total_seconds()),
        refresh_token=refresh_token,
    )


async def _logged_in(request: Request, session: AsyncSession, account: Account) -> AccessToken:
    """A new session for the account (committed with whatever the caller changed) and its first pair."""
    settings = request.app.state.settings
    opened, refresh_token = await sessions.open_session(
        session, accounts.realm_of(account), account.id, _refresh_ttl(settings)
    )
    await session.commit()
    return _pair(settings, account, opened.id, refresh_token)


async def _authenticate(request: Request, session: AsyncSession, realm: AccountRealm, body: Login) -> Account:
    """The live account with this e-mail and password, unless the e-mail is locked out; one answer, and
    the same work, for every failure."""
    key = lockout.key_of(realm, body.email)
    attempt = await lockout.hold(session, key)
    account = await accounts.by_email(session, realm, body.email)
    if (
        # argon2 costs tens of milliseconds of CPU: in a thread, so logins never stall the event loop.
        not await run_in_threadpool(
            verify_password, account.password_hash if account else _DUMMY_HASH, body.password
        )
        or account is None
    ):
        lockout.record_failure(attempt, lockout.LockoutPolicy.of(request.app.state.settings))
        await session.commit()
        raise AppError("INVALID_CREDENTIALS")
    await lockout.clear(session, key)
    if not account.is_active:
        await session.commit()
        raise AppError("USER_INACTIVE")
    account.last_login_at = datetime.now(UTC)
    return account


@router.post("/api/v1/auth/login", response_model=AccessToken, summary="Log in as staff or a customer")
async def login(request: Request, body: Login, session: Session) -> AccessToken:
    return await _logged_in(request, session, await _authenticate(request, session, AccountRealm.USER, body))


@router.post(
    "/api/v1/auth/register", status_code=201, response_model=AccessToken, summary="Create a customer account"
)
async def register(request: Request, body: Register, session: Session) -> AccessToken:
    taken = await accounts.by_email(session, AccountRealm.USER, body.email)
    if taken:
        raise AppError("EMAIL_ALREADY_REGISTERED", "an account with this e-mail exists; log in instead")
    user = User(
        email=body.email,
        password_hash=await run_in_threadpool(hash_password, body.password),
        full_name=body.full_name,
    )
    session.add(user)
    try:
        await session.flush()
    except IntegrityError as exc:  # the same e-mail registered concurrently
        raise AppError(
            "EMAIL_ALREADY_REGISTERED", "an account with this e-mail exists; log in instead"
        ) from exc
    return await _logged_in(request, session, user)


@router.post(
    "/api/v1/auth/refresh",
    response_model=AccessToken,
    summary="A new token pair for a refresh token, which is used up (a reused one ends its session)",
)
async def refresh(request: Request, body: Refresh, session: Session) -> AccessToken:
    settings = request.app.state.settings
    try:
        current, refresh_token = await sessions.rotate(session, body.refresh_token, _refresh_ttl(settings))
    except TokenError as exc:
        raise AppError(exc.code, str(exc)) from exc
    account = await accounts.active(session, current.realm, current.principal_id)
    if account is None:
        raise AppError("TOKEN_INVALID", "the account behind this token is no longer active")
    if isinstance(account, VendorUser):
        check_vendor(await session.get(Vendor, account.vendor_id))
    await session.commit()
    return _pair(settings, account, current.id, refresh_token)


@router.post(
    "/api/v1/auth/logout",
    status_code=204,
    response_class=Response,
    summary="End this session: its access and refresh tokens stop working",
)
async def logout(caller: AnySession, session: Session) -> Response:
    await sessions.end(session, caller.session_id, SessionEnd.LOGOUT)
    await session.commit()
    return Response(status_code=204)


@router.post(
    "/api/v1/auth/logout-everywhere",
    status_code=204,
    response_class=Response,
    summary="End every session of this account, on every device",
)
async def logout_everywhere(caller: AnySession, session: Session) -> Response:
    await sessions.end_all(session, caller.realm, caller.account_id, SessionEnd.LOGOUT_EVERYWHERE)
    await session.commit()
    return Response(status_code=204)


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
    member = await _authenticate(request, session, AccountRealm.VENDOR_USER, body)
    return await _logged_in(request, session, member)


async def _send_reset(app: FastAPI, realm: AccountRealm, email: str) -> None:
    """Queues the reset e-mail and starts its delivery, after the answer has gone out (so a known e-mail
    answers as fast as an unknown one); a failure is logged and the client may ask again."""
    settings: Settings = app.state.settings
    try:
        async with app.state.sessions() as session:
            account = await accounts.by_email(session, realm, email)
            if account is None or not account.is_active:
                return
            ttl = timedelta(minutes=settings.password_reset_ttl_minutes)
            row = await resets.request(session, account, ttl=ttl, url=settings.password_reset_url)
            await session.commit()
        if row is not None and row.status is NotificationStatus.QUEUED:
            await app.state.temporal.start_workflow(
                NOTIFICATION_WORKFLOW,
                Delivery(
                    notification_id=row.id, retry_budget_s=round(settings.mail_retry_budget_minutes * 60)
                ),
                id=notification_workflow_id(row.id),
                task_queue=settings.temporal_task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            )
    except Exception as exc:  # the answer is gone already; nothing else can report it
        log.warning("password reset e-mail not queued: %s", type(exc).__name__)


RESET_SUMMARY = "E-mail a single-use password reset code (always 202, whether or not the account exists)"


@router.post(
    "/api/v1/auth/password-reset", status_code=202, response_model=ResetRequested, summary=RESET_SUMMARY
)
async def password_reset(request: Request, body: ResetRequest, background: BackgroundTasks) -> ResetRequested:
    background.add_task(_send_reset, request.app, AccountRealm.USER, body.email)
    return ResetRequested()


@router.post(
    "/api/v1/vendor/auth/password-reset",
    status_code=202,
    response_model=ResetRequested,
    summary=RESET_SUMMARY + ", for a vendor team member",
)
async def vendor_password_reset(
    request: Request, body: ResetRequest, background: BackgroundTasks
) -> ResetRequested:
    background.add_task(_send_reset, request.app, AccountRealm.VENDOR_USER, body.email)
    return ResetRequested()


@router.post(
    "/api/v1/auth/password-reset/confirm",
    status_code=204,
    response_class=Response,
    summary="Set a new password with the e-mailed code (any account); every session of the account ends",
)
async def confirm_password_reset(body: ResetConfirm, session: Session) -> Response:
    reset = await resets.consume(session, body.token)
    account = await accounts.active(session, reset.realm, reset.principal_id)
    if account is None:
        raise AppError("RESET_TOKEN_INVALID", "the account of this reset code is no longer active")
    account.password_hash = await run_in_threadpool(hash_password, body.new_password)
    await sessions.end_all(session, reset.realm, account.id, SessionEnd.PASSWORD_RESET)
    await lockout.clear(session, lockout.key_of(reset.realm, account.email))
    await session.commit()
    return Response(status_code=204)
