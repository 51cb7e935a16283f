"""Sessions: refresh tokens stored hashed and rotated on every use, a reused one ends its whole session,
logout and logout-everywhere, and deactivated accounts refused at once, for customers, staff and vendor
team members."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from tests.conftest import make_settings
from tests.support.stack import api_client
from ttelgo.admins import ensure_admin
from ttelgo.auth.opaque import digest
from ttelgo.auth.passwords import hash_password
from ttelgo.auth.tokens import PrincipalKind, TokenClaims, issue
from ttelgo.db import session_factory
from ttelgo.models import User, Vendor, VendorStatus, VendorUser, VendorUserRole
from ttelgo.models.identity import AuthSession, RefreshToken, SessionEnd
from ttelgo.sandbox.processes import free_port

PASSWORD = "a long enough password"


@dataclass
class World:
    api: httpx.AsyncClient
    sessions: async_sessionmaker[AsyncSession]

    async def register(self) -> tuple[str, dict[str, str]]:
        email = f"{uuid.uuid4().hex[:10]}@example.com"
        response = await self.api.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
        assert response.status_code == 201, response.text
        return email, response.json()

    async def login(self, email: str, path: str = "/api/v1/auth/login") -> dict[str, str]:
        response = await self.api.post(path, json={"email": email, "password": PASSWORD})
        assert response.status_code == 200, response.text
        return response.json()

    async def refresh(self, token: str) -> httpx.Response:
        return await self.api.post("/api/v1/auth/refresh", json={"refresh_token": token})

    async def me(self, tokens: dict[str, str], path: str = "/api/v1/me") -> httpx.Response:
        return await self.api.get(path, headers={"Authorization": f"Bearer {tokens['access_token']}"})

    async def vendor_member(self) -> str:
        """An approved vendor with one owner; the owner's e-mail."""
        email = f"owner-{uuid.uuid4().hex[:8]}@example.com"
        async with self.sessions() as session:
            vendor = Vendor(name="Roam", contact_email=f"{uuid.uuid4().hex[:8]}@example.com")
            vendor.status = VendorStatus.APPROVED
            session.add(vendor)
            await session.flush()
            session.add(
                VendorUser(
                    vendor_id=vendor.id,
                    email=email,
                    password_hash=hash_password(PASSWORD),
                    role=VendorUserRole.OWNER,
                )
            )
            await session.commit()
        return email


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[World]:
    # Sessions need no Temporal; the lazy client never dials this closed port.
    settings = make_settings(
        database_url=database_url,
        temporal_address=f"127.0.0.1:{free_port()}",
        rate_limit_enabled=False,  # the per-IP limits are tested elsewhere; these are per account
    )
    engine = create_async_engine(database_url)
    try:
        async with api_client(settings) as api:
            yield World(api, session_factory(engine))
    finally:
        await engine.dispose()


def assert_refused(response: httpx.Response, code: str) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["code"] == code


async def test_refresh_tokens_rotate_and_a_reused_one_ends_its_session(world: World) -> None:
    email, first = await world.register()
    other_device = await world.login(email)
    rotated = await world.refresh(first["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert (await world.me(second)).status_code == 200
    # The first refresh token was used up; presenting it again means someone else holds the session.
    assert_refused(await world.refresh(first["refresh_token"]), "SESSION_REVOKED")
    # So the whole family is gone: the newer refresh token and every access token of the session.
    assert_refused(await world.refresh(second["refresh_token"]), "SESSION_REVOKED")
    assert_refused(await world.me(second), "SESSION_REVOKED")
    assert_refused(await world.me(first), "SESSION_REVOKED")
    async with world.sessions() as session:
        ended = await session.scalar(select(AuthSession).where(AuthSession.revoked_at.is_not(None)))
        assert ended is not None and ended.revoked_reason is SessionEnd.TOKEN_REUSE
    # The account's other session is untouched.
    assert (await world.me(other_device)).status_code == 200
    assert (await world.refresh(other_device["refresh_token"])).status_code == 200


async def test_refresh_tokens_are_stored_only_as_hashes(world: World) -> None:
    _, tokens = await world.register()
    async with world.sessions() as session:
        stored = list(await session.scalars(select(RefreshToken.token_hash)))
    assert stored == [digest(tokens["refresh_token"])]
    assert tokens["refresh_token"] not in stored


async def test_an_unknown_or_expired_refresh_token_is_refused(world: World) -> None:
    _, tokens = await world.register()
    assert_refused(await world.refresh("ttr_" + "x" * 43), "TOKEN_INVALID")
    async with world.sessions() as session:
        await session.execute(update(RefreshToken).values(expires_at=RefreshToken.created_at))
        await session.commit()
    assert_refused(await world.refresh(tokens["refresh_token"]), "TOKEN_EXPIRED")


async def test_logout_ends_this_session_and_logout_everywhere_ends_them_all(world: World) -> None:
    email, phone = await world.register()
    laptop, tablet = await world.login(email), await world.login(email)
    logout = await world.api.post(
        "/api/v1/auth/logout", headers={"Authorization": f"Bearer {phone['access_token']}"}
    )
    assert logout.status_code == 204
    assert_refused(await world.me(phone), "SESSION_REVOKED")
    assert_refused(await world.refresh(phone["refresh_token"]), "SESSION_REVOKED")
    assert (await world.me(laptop)).status_code == 200
    everywhere = await world.api.post(
        "/api/v1/auth/logout-everywhere", headers={"Authorization": f"Bearer {laptop['access_token']}"}
    )
    assert everywhere.status_code == 204
    for tokens in (laptop, tablet):
        assert_refused(await world.me(tokens), "SESSION_REVOKED")
        assert_refused(await world.refresh(tokens["refresh_token"]), "SESSION_REVOKED")
    assert (await world.api.post("/api/v1/auth/logout")).status_code == 401
    assert (await world.me(await world.login(email))).status_code == 200  # logging in again works


async def test_staff_sessions_end_the_same_way(world: World) -> None:
    async with world.sessions() as session:
        await ensure_admin(session, "staff@example.com", PASSWORD)
    tokens = await world.login("staff@example.com")
    orders = "/api/v1/admin/orders"
    assert (await world.me(tokens, orders)).status_code == 200
    rotated = (await world.refresh(tokens["refresh_token"])).json()
    assert (await world.me(rotated, orders)).status_code == 200
    assert (
        await world.api.post(
            "/api/v1/auth/logout", headers={"Authorization": f"Bearer {rotated['access_token']}"}
        )
    ).status_code == 204
    assert_refused(await world.me(rotated, orders), "SESSION_REVOKED")


async def test_vendor_team_members_get_rotating_sessions_too(world: World) -> None:
    email = await world.vendor_member()
    tokens = await world.login(email, "/api/v1/vendor/auth/login")
    keys = "/api/v1/vendor/api-keys"
    assert (await world.me(tokens, keys)).status_code == 200
    rotated = await world.refresh(tokens["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    assert (await world.me(rotated.json(), keys)).status_code == 200
    assert_refused(await world.refresh(tokens["refresh_token"]), "SESSION_REVOKED")
    assert_refused(await world.me(rotated.json(), keys), "SESSION_REVOKED")


async def test_a_suspended_vendor_cannot_refresh(world: World) -> None:
    email = await world.vendor_member()
    tokens = await world.login(email, "/api/v1/vendor/auth/login")
    async with world.sessions() as session:
        await session.execute(update(Vendor).values(status=VendorStatus.SUSPENDED))
        await session.commit()
    refreshed = await world.refresh(tokens["refresh_token"])
    assert refreshed.status_code == 403 and refreshed.json()["code"] == "VENDOR_SUSPENDED"
    assert (await world.me(tokens, "/api/v1/vendor/api-keys")).json()["code"] == "VENDOR_SUSPENDED"


@pytest.mark.parametrize("change", [{"is_active": False}, {"deleted_at": "now"}])
async def test_deactivated_and_deleted_accounts_are_refused_at_once(
    world: World, change: dict[str, object]
) -> None:
    values = {k: func.now() if v == "now" else v for k, v in change.items()}
    customer_email, customer = await world.register()
    member_email = await world.vendor_member()
    member = await world.login(member_email, "/api/v1/vendor/auth/login")
    async with world.sessions() as session:
        await session.execute(update(User).where(User.email == customer_email).values(**values))
        await session.execute(update(VendorUser).where(VendorUser.email == member_email).values(**values))
        await session.commit()
    assert_refused(await world.me(customer), "TOKEN_INVALID")
    assert_refused(await world.refresh(customer["refresh_token"]), "TOKEN_INVALID")
    assert_refused(await world.me(member, "/api/v1/vendor/api-keys"), "TOKEN_INVALID")
    assert_refused(await world.refresh(member["refresh_token"]), "TOKEN_INVALID")


async def test_access_tokens_without_a_session_are_refused(world: World) -> None:
    """Tokens minted before sessions existed (no `sid`) stop working, like any ended session."""
    _, tokens = await world.register()
    me = (await world.me(tokens)).json()
    bare = issue(
        TokenClaims(uuid.UUID(me["id"]), PrincipalKind.CUSTOMER, "customer"),
        make_settings().jwt_secret or "",
        timedelta(minutes=5),
    )
    assert_refused(await world.me({"access_token": bare}), "SESSION_REVOKED")
