"""Vendor lifecycle (issue 14): correcting a vendor, rejecting an application, deactivating vendors, team
members and customers — each audited, and every key, token and login of a deactivated account refused on
its very next call."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from tests.b2b.conftest import B2B, VendorHandle
from ttelgo.models import ApiKey, AuditLog, Order, Vendor, VendorUser
from ttelgo.models.identity import AuthSession, SessionEnd

PASSWORD = "a long enough password"


async def _member(b2b: B2B, vendor: VendorHandle, role: str) -> tuple[str, dict[str, str], str]:
    """A new team member: (id, Bearer headers, refresh token)."""
    email = f"{role}-{uuid.uuid4().hex[:8]}@example.com"
    added = await b2b.api.post(
        f"/api/v1/admin/vendors/{vendor.id}/users",
        json={"email": email, "password": PASSWORD, "role": role},
        headers=b2b.admin,
    )
    assert added.status_code == 201, added.text
    login = await b2b.api.post("/api/v1/vendor/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    tokens = login.json()
    return added.json()["id"], {"Authorization": f"Bearer {tokens['access_token']}"}, tokens["refresh_token"]


async def _audit(b2b: B2B, target_id: str, action: str) -> AuditLog:
    async with b2b.sessions() as session:
        row = await session.scalar(
            select(AuditLog).where(AuditLog.target_id == target_id, AuditLog.action == action)
        )
    assert row is not None, action
    return row


async def test_an_admin_corrects_name_contact_email_and_threshold_with_an_audit_row(b2b: B2B) -> None:
    vendor, other = await b2b.new_vendor(), await b2b.new_vendor()
    email = f"billing-{uuid.uuid4().hex[:8]}@example.com"
    patched = await b2b.api.patch(
        f"/api/v1/admin/vendors/{vendor.id}",
        json={"name": "Roam Shop Ltd", "contact_email": email, "low_balance_threshold_minor": 5000},
        headers=b2b.admin,
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert (body["name"], body["contact_email"], body["low_balance_threshold_minor"]) == (
        "Roam Shop Ltd",
        email,
        5000,
    )
    audit = await _audit(b2b, vendor.id, "vendor.update")
    assert audit.actor_type == "admin" and audit.before and audit.after
    assert audit.before["name"] == "Roam Shop" and audit.after["contact_email"] == email

    # Only the fields sent change; null turns the alert off.
    cleared = await b2b.api.patch(
        f"/api/v1/admin/vendors/{vendor.id}", json={"low_balance_threshold_minor": None}, headers=b2b.admin
    )
    assert cleared.status_code == 200 and cleared.json()["low_balance_threshold_minor"] is None
    assert cleared.json()["name"] == "Roam Shop Ltd"

    # Another live vendor's e-mail, in any case, is a 409 and changes nothing.
    async with b2b.sessions() as session:
        taken = (await session.get_one(Vendor, uuid.UUID(other.id))).contact_email
    clash = await b2b.api.patch(
        f"/api/v1/admin/vendors/{vendor.id}", json={"contact_email": taken.upper()}, headers=b2b.admin
    )
    assert clash.status_code == 409 and clash.json()["code"] == "VENDOR_ALREADY_EXISTS"
    for bad in ({}, {"name": None}, {"name": ""}, {"contact_email": "not an e-mail"}):
        refused = await b2b.api.patch(f"/api/v1/admin/vendors/{vendor.id}", json=bad, headers=b2b.admin)
        assert refused.status_code == 422, bad
    shown = (await b2b.api.get(f"/api/v1/admin/vendors/{vendor.id}", headers=b2b.admin)).json()
    assert (shown["name"], shown["contact_email"]) == ("Roam Shop Ltd", email)


async def test_only_a_pending_application_can_be_rejected(b2b: B2B) -> None:
    applicant, trading = await b2b.new_vendor(approve=False), await b2b.new_vendor()
    rejected = await b2b.api.post(
        f"/api/v1/admin/vendors/{applicant.id}/reject",
        json={"reason": "could not verify the company"},
        headers=b2b.admin,
    )
    assert rejected.status_code == 200 and rejected.json()["status"] == "REJECTED"
    audit = await _audit(b2b, applicant.id, "vendor.rejected")
    assert audit.reason == "could not verify the company" and audit.before["status"] == "PENDING"
    denied = await b2b.api.get("/api/v1/vendor/wallet", headers=applicant.headers)
    assert denied.status_code == 403 and denied.json()["code"] == "VENDOR_NOT_APPROVED"

    for vendor in (applicant, trading):
        again = await b2b.api.post(f"/api/v1/admin/vendors/{vendor.id}/reject", headers=b2b.admin)
        assert again.status_code == 409 and again.json()["code"] == "CONFLICT"
    assert (await b2b.api.get(f"/api/v1/admin/vendors/{trading.id}", headers=b2b.admin)).json()[
        "status"
    ] == "APPROVED"


async def test_a_deactivated_vendors_keys_and_logins_are_refused_at_once(b2b: B2B) -> None:
    vendor = await b2b.new_vendor(balance=10_000)
    order = await b2b.order(vendor)
    assert order.status_code == 201, order.text
    owner_id, owner, refresh = await _member(b2b, vendor, "owner")
    assert (await b2b.api.get("/api/v1/vendor/wallet", headers=vendor.headers)).status_code == 200
    assert (await b2b.api.get("/api/v1/vendor/wallet", headers=owner)).status_code == 200

    gone = await b2b.api.post(
        f"/api/v1/admin/vendors/{vendor.id}/deactivate",
        json={"reason": "contract ended"},
        headers=b2b.admin,
    )
    assert gone.status_code == 204, gone.text

    by_key = await b2b.api.get("/api/v1/vendor/wallet", headers=vendor.headers)
    assert by_key.status_code == 401 and by_key.json()["code"] == "API_KEY_INVALID"
    by_token = await b2b.api.get("/api/v1/vendor/orders", headers=owner)
    assert by_token.status_code == 401
    relogin = await b2b.api.post(
        "/api/v1/vendor/auth/login", json={"email": (await _email(b2b, owner_id)), "password": PASSWORD}
    )
    assert relogin.status_code == 401
    refreshed = await b2b.api.post("/api/v1/auth/refresh", json={"refresh_token": refresh})
    assert refreshed.status_code == 401
    assert (await b2b.api.get(f"/api/v1/admin/vendors/{vendor.id}", headers=b2b.admin)).status_code == 404
    listed = (await b2b.api.get("/api/v1/admin/vendors", headers=b2b.admin)).json()["items"]
    assert vendor.id not in {v["id"] for v in listed}
    again = await b2b.api.post(f"/api/v1/admin/vendors/{vendor.id}/deactivate", headers=b2b.admin)
    assert again.status_code == 404

    audit = await _audit(b2b, vendor.id, "vendor.deactivate")
    assert audit.reason == "contract ended" and audit.after["api_keys_revoked"] == 1
    async with b2b.sessions() as session:
        # A soft delete: the vendor, its orders and its team stay, marked.
        assert (await session.get_one(Vendor, uuid.UUID(vendor.id))).deleted_at is not None
        assert (await session.get_one(VendorUser, uuid.UUID(owner_id))).deleted_at is not None
        assert await session.get(Order, uuid.UUID(order.json()["id"])) is not None
        key = await session.get_one(ApiKey, uuid.UUID(vendor.key_id))
        assert key.revoked_at is not None
        ended = (await session.scalars(select(AuthSession).where(AuthSession.principal_id == owner_id))).all()
        assert ended and all(s.revoked_reason is SessionEnd.DEACTIVATED for s in ended)


async def _email(b2b: B2B, member_id: str) -> str:
    async with b2b.sessions() as session:
        return (await session.get_one(VendorUser, uuid.UUID(member_id))).email


async def test_the_owner_and_admins_deactivate_team_members(b2b: B2B) -> None:
    vendor, stranger = await b2b.new_vendor(), await b2b.new_vendor()
    owner_id, owner, _ = await _member(b2b, vendor, "owner")
    dev_id, developer, _ = await _member(b2b, vendor, "developer")
    other_id, _, _ = await _member(b2b, stranger, "viewer")

    def url(member_id: str) -> str:
        return f"/api/v1/vendor/users/{member_id}/deactivate"

    refused = await b2b.api.post(url(owner_id), headers=developer)
    assert refused.status_code == 403 and refused.json()["code"] == "FORBIDDEN"
    assert (await b2b.api.post(url(owner_id), headers=vendor.headers)).status_code == 401  # keys cannot
    assert (await b2b.api.post(url(owner_id), headers=owner)).status_code == 409  # not themselves
    assert (await b2b.api.post(url(other_id), headers=owner)).status_code == 404  # nor another vendor's

    done = await b2b.api.post(url(dev_id), json={"reason": "left the company"}, headers=owner)
    assert done.status_code == 204, done.text
    assert (await b2b.api.get("/api/v1/vendor/wallet", headers=developer)).status_code == 401
    login = await b2b.api.post(
        "/api/v1/vendor/auth/login", json={"email": await _email(b2b, dev_id), "password": PASSWORD}
    )
    assert login.status_code == 401
    audit = await _audit(b2b, dev_id, "vendor_user.deactivate")
    assert audit.actor_type == "vendor_user" and audit.actor_id == owner_id
    assert audit.reason == "left the company"

    by_admin = await b2b.api.post(
        f"/api/v1/admin/vendors/{vendor.id}/users/{owner_id}/deactivate", headers=b2b.admin
    )
    assert by_admin.status_code == 204
    assert (await b2b.api.get("/api/v1/vendor/wallet", headers=owner)).status_code == 401
    assert (await _audit(b2b, owner_id, "vendor_user.deactivate")).actor_type == "admin"
    # The vendor itself and its API key carry on.
    assert (await b2b.api.get("/api/v1/vendor/wallet", headers=vendor.headers)).status_code == 200
    wrong_vendor = await b2b.api.post(
        f"/api/v1/admin/vendors/{vendor.id}/users/{other_id}/deactivate", headers=b2b.admin
    )
    assert wrong_vendor.status_code == 404


async def test_an_admin_deactivates_a_customer(b2b: B2B) -> None:
    email = f"cust-{uuid.uuid4().hex[:8]}@example.com"
    registered = await b2b.api.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
    assert registered.status_code == 201, registered.text
    customer = {"Authorization": f"Bearer {registered.json()['access_token']}"}
    me = await b2b.api.get("/api/v1/me", headers=customer)
    assert me.status_code == 200
    user_id = me.json()["id"]

    done = await b2b.api.post(
        f"/api/v1/admin/customers/{user_id}/deactivate", json={"reason": "fraud"}, headers=b2b.admin
    )
    assert done.status_code == 204, done.text
    assert (await b2b.api.get("/api/v1/me", headers=customer)).status_code == 401
    login = await b2b.api.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 401
    assert (await _audit(b2b, user_id, "user.deactivate")).reason == "fraud"
    again = await b2b.api.post(f"/api/v1/admin/customers/{user_id}/deactivate", headers=b2b.admin)
    assert again.status_code == 404 and again.json()["code"] == "USER_NOT_FOUND"
    # Staff are not customers: this endpoint cannot lock an admin out.
    admin_id = (await b2b.api.get("/api/v1/me", headers=b2b.admin)).json()["id"]
    staff = await b2b.api.post(f"/api/v1/admin/customers/{admin_id}/deactivate", headers=b2b.admin)
    assert staff.status_code == 404
    # The e-mail is free again for a new account.
    again_registered = await b2b.api.post(
        "/api/v1/auth/register", json={"email": email, "password": PASSWORD}
    )
    assert again_registered.status_code == 201


async def test_a_customer_closes_their_own_account(b2b: B2B) -> None:
    email = f"leaver-{uuid.uuid4().hex[:8]}@example.com"
    registered = await b2b.api.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
    assert registered.status_code == 201, registered.text
    tokens = registered.json()
    customer = {"Authorization": f"Bearer {tokens['access_token']}"}
    user_id = (await b2b.api.get("/api/v1/me", headers=customer)).json()["id"]

    assert (await b2b.api.delete("/api/v1/me", headers=customer)).status_code == 204
    assert (await b2b.api.get("/api/v1/me", headers=customer)).status_code == 401
    refreshed = await b2b.api.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 401
    login = await b2b.api.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 401
    audit = await _audit(b2b, user_id, "user.deactivate")
    assert audit.actor_type == "user" and audit.actor_id == user_id
    staff = await b2b.api.delete("/api/v1/me", headers=b2b.admin)
    assert staff.status_code == 403 and staff.json()["code"] == "FORBIDDEN"
