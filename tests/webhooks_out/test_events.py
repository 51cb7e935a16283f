"""Refund and top-up events reach the vendor: `refund.succeeded` for a wallet order, `topup.completed`."""

from __future__ import annotations

import uuid

from standardwebhooks import Webhook

from tests.b2b.conftest import B2B, VendorHandle
from tests.b2c.conftest import B2C
from tests.webhooks_out.conftest import Receiver, team_member


async def _hooked(b2c: B2C, receiver: Receiver, **body: object) -> tuple[B2B, VendorHandle, str]:
    b2b = await b2c.wallet_world()
    vendor = await b2b.new_vendor(balance=10_000)
    member = await team_member(b2b, vendor)
    put = await b2b.api.put("/api/v1/vendor/webhook", json={"url": receiver.url, **body}, headers=member)
    assert put.status_code == 200, put.text
    return b2b, vendor, put.json()["secret"]


async def test_a_wallet_refund_sends_refund_succeeded(b2c: B2C, receiver: Receiver) -> None:
    b2b, vendor, secret = await _hooked(b2c, receiver, events=["refund.succeeded", "refund.failed"])
    order = await b2b.order(vendor)
    assert order.status_code == 201, order.text
    refund = await b2c.api.post(
        f"/api/v1/vendor/orders/{order.json()['id']}/refund",
        json={"reason": "not needed"},
        headers={**vendor.headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert refund.status_code == 201, refund.text
    b2c.workflows.append(f"refund-{refund.json()['id']}")
    await receiver.wait_for(lambda: receiver.answered(200))
    [call] = receiver.calls  # order.completed was not subscribed to
    event = Webhook(secret).verify(call.body, call.headers)
    assert event["type"] == "refund.succeeded"
    assert event["data"]["refund_id"] == refund.json()["id"]
    assert event["data"]["order_id"] == order.json()["id"] and event["data"]["status"] == "SUCCEEDED"


async def test_a_card_topup_sends_topup_completed(b2c: B2C, receiver: Receiver) -> None:
    _, vendor, secret = await _hooked(b2c, receiver, events=["topup.completed"])
    response = await b2c.api.post(
        "/api/v1/vendor/wallet/topup/intents",
        json={"amount_minor": 5_000, "currency": "USD"},
        headers={**vendor.headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert response.status_code == 201, response.text
    topup = response.json()
    b2c.workflows.append(f"topup-{topup['id']}")
    assert (await b2c.pay(topup["payment"]["payment_intent_id"])).status == "succeeded"
    await receiver.wait_for(lambda: receiver.answered(200))
    [call] = receiver.calls
    event = Webhook(secret).verify(call.body, call.headers)
    assert event["type"] == "topup.completed"
    assert event["data"] == {
        "topup_id": topup["id"],
        "status": "COMPLETED",
        "amount_minor": 5_000,
        "currency": "USD",
        "failure_reason": None,
    }
