"""Hostile input in the customer world (issue 15): card orders, the admin's order tools."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from tests.b2c.conftest import B2C, Customer
from ttelgo.models import AuditLog


async def test_the_admin_customer_email_filter_matches_any_case(b2c: B2C) -> None:
    email = f"Mixed.{uuid.uuid4().hex[:8]}@Example.COM"
    registered = await b2c.api.post(
        "/api/v1/auth/register", json={"email": email, "password": "a long enough password"}
    )
    assert registered.status_code == 201, registered.text
    customer = Customer(email, {"Authorization": f"Bearer {registered.json()['access_token']}"})
    order = await b2c.order(customer)
    assert order.status_code == 201, order.text
    admin = await b2c.admin()
    for asked in (email, email.lower(), email.upper()):
        found = await b2c.api.get("/api/v1/admin/orders", params={"customer_email": asked}, headers=admin)
        assert [o["id"] for o in found.json()["items"]] == [order.json()["id"]], asked


async def test_an_admin_cancel_with_nul_in_its_reason_is_refused_and_a_good_one_is_audited(b2c: B2C) -> None:
    order = (await b2c.order(await b2c.customer())).json()
    admin = await b2c.admin()
    path = f"/api/v1/admin/orders/{order['id']}/cancel"
    refused = await b2c.api.post(path, json={"reason": "customer asked\x00"}, headers=admin)
    assert refused.status_code == 422 and refused.json()["code"] == "VALIDATION_ERROR", refused.text
    detail = (await b2c.api.get(f"/api/v1/admin/orders/{order['id']}", headers=admin)).json()
    assert detail["status"] == "PAYMENT_PENDING"

    canceled = await b2c.api.post(path, json={"reason": "customer asked"}, headers=admin)
    assert canceled.status_code == 200 and canceled.json()["status"] == "CANCELED", canceled.text
    async with b2c.sessions() as session:
        [row] = await session.scalars(
            select(AuditLog).where(AuditLog.action == "order.cancel", AuditLog.target_id == order["id"])
        )
    assert row.before and row.before["status"] == "PAYMENT_PENDING"
    assert row.after and row.after["status"] == "CANCELED"
    assert row.ip_address == "127.0.0.1"
