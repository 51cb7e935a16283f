"""Customer accounts: register, log in, refresh, me; e-mails unique case-insensitively."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

from tests.conftest import make_settings
from tests.support.stack import api_client
from ttelgo.auth.tokens import PrincipalKind, TokenClaims, issue
from ttelgo.sandbox.processes import free_port

PASSWORD = "a long enough password"


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    # Accounts need no Temporal; the lazy client never dials this closed port.
    async with api_client(
        make_settings(database_url=database_url, temporal_address=f"127.0.0.1:{free_port()}")
    ) as c:
        yield c


async def test_register_then_me_then_login(api: httpx.AsyncClient) -> None:
    registered = await api.post(
        "/api/v1/auth/register", json={"email": "Ana@Example.com", "password": PASSWORD, "full_name": "Ana"}
    )
    assert registered.status_code == 201
    tokens = registered.json()
    me = await api.get("/api/v1/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert me.status_code == 200
    assert me.json()["email"] == "Ana@example.com" and me.json()["role"] == "customer"  # domain normalised
    login = await api.post("/api/v1/auth/login", json={"email": "ana@example.COM", "password": PASSWORD})
    assert login.status_code == 200 and login.json()["refresh_token"]


async def test_email_is_unique_case_insensitively(api: httpx.AsyncClient) -> None:
    assert (
        await api.post("/api/v1/auth/register", json={"email": "bo@example.com", "password": PASSWORD})
    ).is_success
    again = await api.post("/api/v1/auth/register", json={"email": "BO@example.com", "password": PASSWORD})
    assert again.status_code == 409 and again.json()["code"] == "EMAIL_ALREADY_REGISTERED"


@pytest.mark.parametrize(
    "body",
    [{"email": "not-an-email", "password": PASSWORD}, {"email": "cy@example.com", "password": "short"}],
)
async def test_bad_registrations_are_422(api: httpx.AsyncClient, body: dict[str, str]) -> None:
    response = await api.post("/api/v1/auth/register", json=body)
    assert response.status_code == 422 and response.json()["code"] == "VALIDATION_ERROR"


async def test_refresh_gives_a_new_pair_and_tokens_are_not_interchangeable(api: httpx.AsyncClient) -> None:
    tokens = (
        await api.post("/api/v1/auth/register", json={"email": "di@example.com", "password": PASSWORD})
    ).json()
    refreshed = await api.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200
    assert (
        await api.get("/api/v1/me", headers={"Authorization": f"Bearer {refreshed.json()['access_token']}"})
    ).is_success
    # A refresh token is no access token, and an access token refreshes nothing.
    as_access = await api.get("/api/v1/me", headers={"Authorization": f"Bearer {tokens['refresh_token']}"})
    assert as_access.status_code == 401 and as_access.json()["code"] == "TOKEN_INVALID"
    as_refresh = await api.post("/api/v1/auth/refresh", json={"refresh_token": tokens["access_token"]})
    assert as_refresh.status_code == 401


async def test_expired_and_forged_tokens_are_401(api: httpx.AsyncClient) -> None:
    tokens = (
        await api.post("/api/v1/auth/register", json={"email": "ed@example.com", "password": PASSWORD})
    ).json()
    me = (await api.get("/api/v1/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})).json()
    claims = TokenClaims(subject=uuid.UUID(me["id"]), kind=PrincipalKind.CUSTOMER, role="customer")
    expired = issue(claims, make_settings().jwt_secret or "", timedelta(seconds=-1))
    forged = issue(claims, "another secret of at least thirty-two bytes", timedelta(minutes=5))
    for token, code in ((expired, "TOKEN_EXPIRED"), (forged, "TOKEN_INVALID")):
        response = await api.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401 and response.json()["code"] == code
