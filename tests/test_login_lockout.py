"""Progressive per-account login lockout: after a few failures in a row the e-mail is locked for a growing
time, and while locked even the right password is refused (429 + Retry-After); unknown e-mails behave the
same; a success resets the count; vendor logins lock the same way."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from tests.conftest import make_settings
from tests.support.stack import api_client
from ttelgo.auth.passwords import hash_password
from ttelgo.db import session_factory
from ttelgo.models import Vendor, VendorStatus, VendorUser
from ttelgo.models.identity import LoginFailure
from ttelgo.sandbox.processes import free_port

PASSWORD = "a long enough password"
LOGIN = "/api/v1/auth/login"


@dataclass
class World:
    api: httpx.AsyncClient
    sessions: async_sessionmaker[AsyncSession]

    async def customer(self) -> str:
        email = f"{uuid.uuid4().hex[:10]}@example.com"
        response = await self.api.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
        assert response.status_code == 201, response.text
        return email

    async def login(self, email: str, password: str, path: str = LOGIN) -> httpx.Response:
        return await self.api.post(path, json={"email": email, "password": password})

    async def let_locks_expire(self) -> None:
        """As if the lock's time had passed (no sleeping in tests)."""
        async with self.sessions() as session:
            await session.execute(update(LoginFailure).values(locked_until=func.now()))
            await session.commit()


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[World]:
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


def outcome(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["code"]


async def test_thirty_wrong_passwords_lock_the_account_even_for_the_right_one(world: World) -> None:
    email = await world.customer()
    answers = [await world.login(email, f"wrong {n}") for n in range(30)]
    threshold = make_settings().login_lockout_threshold
    assert [outcome(r) for r in answers[:threshold]] == [(401, "INVALID_CREDENTIALS")] * threshold
    locked = answers[threshold:]
    assert [outcome(r) for r in locked] == [(429, "RATE_LIMITED")] * (30 - threshold)
    assert all(r.headers["content-type"] == "application/problem+json" for r in locked)
    assert all(0 < int(r.headers["Retry-After"]) <= 30 for r in locked)
    right = await world.login(email, PASSWORD)
    assert outcome(right) == (429, "RATE_LIMITED") and int(right.headers["Retry-After"]) > 0


async def test_unknown_emails_lock_exactly_like_accounts(world: World) -> None:
    """Same answers in the same order: a lockout does not reveal whether an account exists."""
    known = await world.customer()
    ghost = f"ghost-{uuid.uuid4().hex[:6]}@example.com"
    for_known = [outcome(await world.login(known, "wrong")) for _ in range(8)]
    for_ghost = [outcome(await world.login(ghost, "wrong")) for _ in range(8)]
    assert for_known == for_ghost
    assert (429, "RATE_LIMITED") in for_ghost


async def test_a_success_resets_the_count(world: World) -> None:
    email = await world.customer()
    threshold = make_settings().login_lockout_threshold
    for _ in range(2):
        for _ in range(threshold - 1):
            assert (await world.login(email, "wrong")).status_code == 401
        assert (await world.login(email, PASSWORD)).status_code == 200
    # The same again after a lock has run out.
    for _ in range(threshold):
        await world.login(email, "wrong")
    await world.let_locks_expire()
    assert (await world.login(email, PASSWORD)).status_code == 200
    assert (await world.login(email, "wrong")).status_code == 401


async def test_each_failure_after_a_lock_locks_for_longer(world: World) -> None:
    email = await world.customer()
    threshold = make_settings().login_lockout_threshold
    for _ in range(threshold):
        await world.login(email, "wrong")
    first = int((await world.login(email, PASSWORD)).headers["Retry-After"])
    await world.let_locks_expire()
    assert (await world.login(email, "wrong again")).status_code == 401  # its one guess
    second = int((await world.login(email, PASSWORD)).headers["Retry-After"])
    assert first <= 30 < second <= 60


async def test_vendor_logins_lock_too(world: World) -> None:
    email = f"owner-{uuid.uuid4().hex[:8]}@example.com"
    async with world.sessions() as session:
        vendor = Vendor(name="Roam", contact_email=email, status=VendorStatus.APPROVED)
        session.add(vendor)
        await session.flush()
        session.add(VendorUser(vendor_id=vendor.id, email=email, password_hash=hash_password(PASSWORD)))
        await session.commit()
    vendor_login = "/api/v1/vendor/auth/login"
    for _ in range(30):
        await world.login(email, "wrong", vendor_login)
    assert outcome(await world.login(email, PASSWORD, vendor_login)) == (429, "RATE_LIMITED")
    # Lockouts are per realm: the same e-mail as a customer is another account.
    assert (await world.login(email, "wrong")).status_code == 401
