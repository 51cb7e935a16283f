"""Request provenance on the card channel: a card order carries the customer's address and user agent, its
refund the admin's who asked for it, and admins see both."""

from __future__ import annotations

import uuid

import httpx

from tests.b2c.conftest import B2C

PEER = (
    "127.0.0.1"  # the test's API is served over loopback (which proxy is trusted: tests/b2b/test_provenance)
)
CUSTOMER_AGENT = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) TravelApp/4.2"
ADMIN_AGENT = "BackOffice/1.0"


def _from(b2c: B2C, headers: dict[str, str]) -> httpx.AsyncClient:
    """A client of the test's API server with its own headers."""
    return httpx.AsyncClient(base_url=b2c.api_base, headers=headers, timeout=30)


async def test_card_orders_and_card_refunds_carry_who_asked_and_admins_see_it(b2c: B2C) -> None:
    customer = await b2c.customer()
    async with _from(b2c, {**customer.headers, "User-Agent": CUSTOMER_AGENT}) as phone:
        placed = await phone.post(
            "/api/v1/orders",
            json={"bundle_code": "esim_1GB_7D_FR_V2", "quantity": 1},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
    assert placed.status_code == 201, placed.text
    order = placed.json()
    b2c.workflows.append(f"order-{order['id']}")
    assert (await b2c.pay(order["payment"]["payment_intent_id"])).status == "succeeded"
    await b2c.wait_for(f"/api/v1/orders/{order['id']}", customer.headers, "COMPLETED")

    admin = await b2c.admin()
    async with _from(b2c, {**admin, "User-Agent": ADMIN_AGENT}) as back_office:
        refunded = await back_office.post(
            f"/api/v1/admin/orders/{order['id']}/refund",
            json={"reason": "customer asked"},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
    assert refunded.status_code == 201, refunded.text
    refund_id = refunded.json()["id"]
    b2c.workflows.append(f"refund-{refund_id}")
    await b2c.wait_for(f"/api/v1/admin/refunds/{refund_id}", admin, "SUCCEEDED")

    shown = (await b2c.api.get(f"/api/v1/admin/orders/{order['id']}", headers=admin)).json()
    assert (shown["client_ip"], shown["user_agent"]) == (PEER, CUSTOMER_AGENT)
    (refund,) = shown["refunds"]
    assert (refund["client_ip"], refund["user_agent"]) == (PEER, ADMIN_AGENT)
    one = (await b2c.api.get(f"/api/v1/admin/refunds/{refund_id}", headers=admin)).json()
    assert (one["client_ip"], one["user_agent"]) == (PEER, ADMIN_AGENT)
