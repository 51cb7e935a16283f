"""`order.refunded`: a wallet order refunded in full tells the vendor once, besides `refund.succeeded`; a
partial refund sends `refund.succeeded` only."""

from __future__ import annotations

import uuid

from standardwebhooks import Webhook

from tests.b2b.conftest import B2B, VendorHandle
from tests.b2c.conftest import B2C
from tests.webhooks_out.conftest import Receiver, team_member

EVENTS = ["order.refunded", "refund.succeeded"]


async def _hooked(b2c: B2C, receiver: Receiver) -> tuple[B2B, VendorHandle, str]:
    b2b = await b2c.wallet_world()
    vendor = await b2b.new_vendor(balance=10_000)
    member = await team_member(b2b, vendor)
    put = await b2b.api.put(
        "/api/v1/vendor/webhook", json={"url": receiver.url, "events": EVENTS}, headers=member
    )
    assert put.status_code == 200, put.text
    return b2b, vendor, put.json()["secret"]


async def _refund(b2c: B2C, b2b: B2B, order_id: str, **body: object) -> str:
    response = await b2c.api.post(
        f"/api/v1/admin/orders/{order_id}/refund",
        json={"reason": "not needed", **body},
        headers={**b2b.admin, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert response.status_code in (200, 201), response.text
    refund_id = response.json()["id"]
    workflow_id = f"refund-{refund_id}"
    b2c.workflows.append(workflow_id)
    await b2c.temporal.get_workflow_handle(workflow_id).result()  # everything it emits, emitted
    return refund_id


async def test_a_full_wallet_refund_sends_order_refunded_once(b2c: B2C, receiver: Receiver) -> None:
    b2b, vendor, secret = await _hooked(b2c, receiver)
    order = await b2b.order(vendor)
    assert order.status_code == 201, order.text
    order_id = order.json()["id"]
    refund_id = await _refund(b2c, b2b, order_id)
    await receiver.wait_for(lambda: len(receiver.answered(200)) >= 2)
    events = [Webhook(secret).verify(c.body, c.headers) for c in receiver.calls]
    by_type = {e["type"]: e for e in events}
    assert sorted(e["type"] for e in events) == sorted(EVENTS)  # one each
    assert len({c.headers["webhook-id"] for c in receiver.calls}) == 2  # two events, two ids
    refunded = by_type["order.refunded"]["data"]
    assert refunded["order_id"] == order_id and refunded["status"] == "REFUNDED"
    assert refunded["total_minor"] == order.json()["total_minor"] and refunded["bundle_code"]
    assert by_type["refund.succeeded"]["data"]["refund_id"] == refund_id


async def test_a_partial_refund_sends_refund_succeeded_only(b2c: B2C, receiver: Receiver) -> None:
    b2b, vendor, secret = await _hooked(b2c, receiver)
    order = await b2b.order(vendor)
    assert order.status_code == 201, order.text
    order_id, total = order.json()["id"], order.json()["total_minor"]
    await _refund(b2c, b2b, order_id, amount_minor=1)
    await receiver.wait_for(lambda: receiver.answered(200))
    [first] = receiver.calls
    assert Webhook(secret).verify(first.body, first.headers)["type"] == "refund.succeeded"

    await _refund(b2c, b2b, order_id, amount_minor=total - 1)  # the rest: now fully refunded
    await receiver.wait_for(lambda: len(receiver.answered(200)) >= 3)
    types = sorted(Webhook(secret).verify(c.body, c.headers)["type"] for c in receiver.calls)
    assert types == ["order.refunded", "refund.succeeded", "refund.succeeded"]
