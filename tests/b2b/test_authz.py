"""Who may do what: admin, vendor (API key and team roles), another vendor, nobody."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from tests.b2b.conftest import B2B
from ttelgo.models import AuditLog


async def test_no_credentials_is_401_everywhere(b2b: B2B) -> None:
    for method, path in [
        ("GET", "/api/v1/admin/vendors"),
        ("GET", "/api/v1/vendor/wallet"),
        ("GET", "/api/v1/vendor/orders"),
        ("POST", "/api/v1/admin/vendors"),
    ]:
        response = await b2b.api.request(method, path)
        assert response.status_code == 401, path
        assert (
            response.json()["code"] == "UNAUTHENTICATED" and "Bearer" in response.headers["WWW-Authenticate"]
        )


async def test_vendor_credentials_do_not_open_admin_endpoints(b2b: B2B) -> None:
    vendor = await b2b.new_vendor()
    assert (await b2b.api.get("/api/v1/admin/vendors", headers=vendor.headers)).status_code == 401
    bearer = {"Authorization": f"Bearer {vendor.key}"}
    assert (await b2b.api.get("/api/v1/admin/vendors", headers=bearer)).status_code == 401
    assert (await b2b.api.get("/api/v1/vendor/wallet", headers=b2b.admin)).status_code == 403
    assert (
        await b2b.api.get("/api/v1/vendor/wallet", headers=bearer)
    ).status_code == 200  # Bearer ttg_… works


async def test_another_vendors_order_is_404(b2b: B2B) -> None:
    owner, stranger = await b2b.new_vendor(balance=10_000), await b2b.new_vendor()
    order = (await b2b.order(owner)).json()
    for path in (f"/api/v1/vendor/orders/{order['id']}", f"/api/v1/vendor/orders/{order['id']}/esims"):
        response = await b2b.api.get(path, headers=stranger.headers)
        assert response.status_code == 404 and response.json()["code"] == "ORDER_NOT_FOUND"
    assert (await b2b.api.get("/api/v1/vendor/orders", headers=stranger.headers)).json()["total"] == 0


async def test_revoked_key_is_401(b2b: B2B) -> None:
    vendor = await b2b.new_vendor()
    revoked = await b2b.api.delete(
        f"/api/v1/admin/vendors/{vendor.id}/api-keys/{vendor.key_id}", headers=b2b.admin
    )
    assert revoked.status_code == 204
    response = await b2b.api.get("/api/v1/vendor/wallet", headers=vendor.headers)
    assert response.status_code == 401 and response.json()["code"] == "API_KEY_INVALID"
    forged = {"X-API-Key": vendor.key[:-4] + "AAAA"}
    assert (await b2b.api.get("/api/v1/vendor/wallet", headers=forged)).status_code == 401


async def test_unapproved_and_suspended_vendors_are_403(b2b: B2B) -> None:
    pending = await b2b.new_vendor(approve=False)
    response = await b2b.order(pending)
    assert response.status_code == 403 and response.json()["code"] == "VENDOR_NOT_APPROVED"
    active = await b2b.new_vendor(balance=10_000)
    await b2b.api.post(
        f"/api/v1/admin/vendors/{active.id}/suspend", json={"reason": "chargebacks"}, headers=b2b.admin
    )
    response = await b2b.order(active)
    assert response.status_code == 403 and response.json()["code"] == "VENDOR_SUSPENDED"
    assert b2b.sim.stats()["orders"]["transactions"] == 0


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"bundle_code": "esim_NOPE_V2", "quantity": 1}, "BUNDLE_UNKNOWN"),
        ({"bundle_code": "esim_1GB_7D_FR_V2", "quantity": 0}, "VALIDATION_ERROR"),
        ({"bundle_code": "esim_1GB_7D_FR_V2", "quantity": 11}, "VALIDATION_ERROR"),
    ],
)
async def test_bad_orders_are_422_and_change_nothing(b2b: B2B, body: dict[str, object], code: str) -> None:
    vendor = await b2b.new_vendor(balance=10_000)
    response = await b2b.api.post(
        "/api/v1/vendor/orders", json=body, headers={**vendor.headers, "Idempotency-Key": str(uuid.uuid4())}
    )
    assert response.status_code == 422 and response.json()["code"] == code
    assert (await b2b.wallet(vendor))["available_minor"] == 10_000


async def test_team_roles(b2b: B2B) -> None:
    vendor = await b2b.new_vendor(balance=10_000)
    tokens = {}
    for role in ("viewer", "developer"):
        email = f"{role}-{uuid.uuid4().hex[:6]}@example.com"
        added = await b2b.api.post(
            f"/api/v1/admin/vendors/{vendor.id}/users",
            json={"email": email, "password": "a long enough password", "role": role},
            headers=b2b.admin,
        )
        assert added.status_code == 201, added.text
        login = await b2b.api.post(
            "/api/v1/vendor/auth/login", json={"email": email, "password": "a long enough password"}
        )
        tokens[role] = {"Authorization": f"Bearer {login.json()['access_token']}"}
    order = {"bundle_code": "esim_1GB_7D_FR_V2", "quantity": 1}
    viewer_order = await b2b.api.post(
        "/api/v1/vendor/orders", json=order, headers={**tokens["viewer"], "Idempotency-Key": "v1"}
    )
    assert viewer_order.status_code == 403
    assert (await b2b.api.get("/api/v1/vendor/ledger", headers=tokens["viewer"])).status_code == 200
    assert (
        await b2b.api.post("/api/v1/vendor/api-keys", json={"name": "x"}, headers=tokens["viewer"])
    ).status_code == 403
    made = await b2b.api.post("/api/v1/vendor/api-keys", json={"name": "ci"}, headers=tokens["developer"])
    assert made.status_code == 201 and made.json()["key"].startswith(made.json()["prefix"])
    # An API key cannot mint keys: that takes a logged-in team member.
    assert (
        await b2b.api.post("/api/v1/vendor/api-keys", json={"name": "y"}, headers=vendor.headers)
    ).status_code == 401
    webhook = await b2b.api.put(
        "/api/v1/vendor/webhook", json={"url": "https://shop.example.com/hooks"}, headers=tokens["developer"]
    )
    assert webhook.status_code == 200 and webhook.json()["secret"].startswith("whsec_")


async def test_wrong_password_and_unknown_email_answer_the_same(b2b: B2B) -> None:
    wrong = await b2b.api.post("/api/v1/auth/login", json={"email": "root@example.com", "password": "nope"})
    unknown = await b2b.api.post(
        "/api/v1/auth/login", json={"email": "ghost@example.com", "password": "nope"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["code"] == unknown.json()["code"] == "INVALID_CREDENTIALS"
    assert wrong.json()["detail"] == unknown.json()["detail"]


async def test_admin_actions_are_audited(b2b: B2B) -> None:
    vendor = await b2b.new_vendor(balance=500)
    await b2b.api.patch(
        f"/api/v1/admin/vendors/{vendor.id}/billing",
        json={"billing_mode": "POSTPAID", "credit_limit_minor": 5000},
        headers=b2b.admin,
    )
    detail = (await b2b.api.get(f"/api/v1/admin/vendors/{vendor.id}", headers=b2b.admin)).json()
    assert detail["wallet"] == {
        "currency": "USD",
        "balance_minor": 500,
        "available_minor": 500,
        "held_minor": 0,
        "credit_limit_minor": 5000,
    }
    async with b2b.sessions() as session:
        actions = list(
            await session.scalars(
                select(AuditLog.action).where(AuditLog.target_id == vendor.id).order_by(AuditLog.id)
            )
        )
    assert actions == ["vendor.create", "vendor.approved", "vendor.adjust_balance", "vendor.billing"]
