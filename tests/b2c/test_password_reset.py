"""Password reset by e-mailed single-use token, end to end: the request (always 202) queues the message in
the outbox, the Notification workflow sends it through SMTP, and the code in it sets a new password once,
ending every session of the account. Vendor team members reset the same way."""

from __future__ import annotations

import asyncio
import re
import time
import uuid

import httpx
from sqlalchemy import select, update

from tests.b2c.conftest import B2C, MailServer
from ttelgo.models import Notification
from ttelgo.models.identity import PasswordReset

PASSWORD, NEW_PASSWORD = "a long enough password", "another long password"
CONFIRM = "/api/v1/auth/password-reset/confirm"
TOKEN = re.compile(r"ttp_[A-Za-z0-9_-]{43}")


async def reset_code(mail: MailServer, to: str, *, skip: int = 0, within_s: float = 30) -> str:
    """The code in the (skip+1)-th reset e-mail to `to`, once it has arrived."""
    deadline = time.monotonic() + within_s
    while True:
        messages = [m for m in mail.messages(to) if m["X-TTelGo-Template"] == "password_reset"]
        if len(messages) > skip:
            text = messages[skip].get_body(preferencelist=("plain",)).get_content()
            found = TOKEN.search(text)
            assert found, text
            return found.group()
        assert time.monotonic() < deadline, f"no password reset e-mail to {to}"
        await asyncio.sleep(0.2)


async def login(
    api: httpx.AsyncClient, email: str, password: str, path: str = "/api/v1/auth/login"
) -> httpx.Response:
    return await api.post(path, json={"email": email, "password": password})


async def test_a_customer_resets_the_password_by_e_mail(b2c: B2C, mail_server: MailServer) -> None:
    customer = await b2c.customer()
    other_session = (await login(b2c.api, customer.email, PASSWORD)).json()
    asked = await b2c.api.post("/api/v1/auth/password-reset", json={"email": customer.email.upper()})
    unknown = await b2c.api.post("/api/v1/auth/password-reset", json={"email": "nobody@example.com"})
    assert asked.status_code == unknown.status_code == 202
    assert asked.json() == unknown.json()
    code = await reset_code(mail_server, customer.email)

    short = await b2c.api.post(CONFIRM, json={"token": code, "new_password": "short"})
    assert short.status_code == 422  # and the code still works:
    done = await b2c.api.post(CONFIRM, json={"token": code, "new_password": NEW_PASSWORD})
    assert done.status_code == 204, done.text

    # Every session of the account has ended; only the new password logs in.
    assert (await b2c.api.get("/api/v1/me", headers=customer.headers)).json()["code"] == "SESSION_REVOKED"
    refreshed = await b2c.api.post(
        "/api/v1/auth/refresh", json={"refresh_token": other_session["refresh_token"]}
    )
    assert refreshed.status_code == 401
    assert (await login(b2c.api, customer.email, PASSWORD)).status_code == 401
    assert (await login(b2c.api, customer.email, NEW_PASSWORD)).status_code == 200

    # The code works once, and is no longer kept in the outbox.
    again = await b2c.api.post(CONFIRM, json={"token": code, "new_password": "yet another password"})
    assert again.status_code == 400 and again.json()["code"] == "RESET_TOKEN_INVALID"
    async with b2c.sessions() as session:
        payloads = list(
            await session.scalars(
                select(Notification.payload).where(Notification.template == "password_reset")
            )
        )
        stored = list(await session.scalars(select(PasswordReset.token_hash)))
    assert len(payloads) == 1 and code not in str(payloads)
    assert code not in stored  # hashed
    assert not mail_server.messages("nobody@example.com")


async def test_an_expired_code_is_refused(b2c: B2C, mail_server: MailServer) -> None:
    customer = await b2c.customer()
    assert (
        await b2c.api.post("/api/v1/auth/password-reset", json={"email": customer.email})
    ).status_code == 202
    code = await reset_code(mail_server, customer.email)
    async with b2c.sessions() as session:
        await session.execute(update(PasswordReset).values(expires_at=PasswordReset.created_at))
        await session.commit()
    expired = await b2c.api.post(CONFIRM, json={"token": code, "new_password": NEW_PASSWORD})
    assert expired.status_code == 400 and expired.json()["code"] == "RESET_TOKEN_INVALID"
    assert (await login(b2c.api, customer.email, PASSWORD)).status_code == 200


async def test_a_reset_lifts_a_login_lockout(b2c: B2C, mail_server: MailServer) -> None:
    customer = await b2c.customer()
    for _ in range(b2c.settings.login_lockout_threshold):
        await login(b2c.api, customer.email, "wrong")
    assert (await login(b2c.api, customer.email, PASSWORD)).status_code == 429
    await b2c.api.post("/api/v1/auth/password-reset", json={"email": customer.email})
    code = await reset_code(mail_server, customer.email)
    assert (
        await b2c.api.post(CONFIRM, json={"token": code, "new_password": NEW_PASSWORD})
    ).status_code == 204
    assert (await login(b2c.api, customer.email, NEW_PASSWORD)).status_code == 200


async def test_a_vendor_team_member_resets_the_same_way(b2c: B2C, mail_server: MailServer) -> None:
    wallets = await b2c.wallet_world()
    vendor = await wallets.new_vendor()
    email = f"dev-{uuid.uuid4().hex[:8]}@example.com"
    added = await b2c.api.post(
        f"/api/v1/admin/vendors/{vendor.id}/users",
        json={"email": email, "password": PASSWORD, "role": "developer"},
        headers=wallets.admin,
    )
    assert added.status_code == 201, added.text
    vendor_login = "/api/v1/vendor/auth/login"
    before = (await login(b2c.api, email, PASSWORD, vendor_login)).json()
    # The customer route knows no vendor team member: no e-mail, same answer.
    assert (await b2c.api.post("/api/v1/auth/password-reset", json={"email": email})).status_code == 202
    assert (
        await b2c.api.post("/api/v1/vendor/auth/password-reset", json={"email": email})
    ).status_code == 202
    code = await reset_code(mail_server, email)
    assert (
        await b2c.api.post(CONFIRM, json={"token": code, "new_password": NEW_PASSWORD})
    ).status_code == 204
    keys = await b2c.api.get(
        "/api/v1/vendor/api-keys", headers={"Authorization": f"Bearer {before['access_token']}"}
    )
    assert keys.status_code == 401
    assert (await login(b2c.api, email, NEW_PASSWORD, vendor_login)).status_code == 200
    assert len([m for m in mail_server.messages(email) if m["X-TTelGo-Template"] == "password_reset"]) == 1
