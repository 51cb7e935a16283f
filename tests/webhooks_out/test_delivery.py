"""Signed vendor webhooks delivered by the WebhookDelivery workflow: retries, one webhook-id, the
standard library verifies the signature, subscriptions, ping and redelivery."""

from __future__ import annotations

import uuid

import pytest
from standardwebhooks import Webhook

from tests.b2b.conftest import B2B
from tests.webhooks_out.conftest import FAST, Receiver, record_history, team_member

pytestmark = pytest.mark.parametrize("b2b", [FAST], indirect=True)


async def _hooked(b2b: B2B, receiver: Receiver, **body: object) -> tuple[object, dict[str, str], str]:
    vendor = await b2b.new_vendor(balance=100_000)
    member = await team_member(b2b, vendor)
    put = await b2b.api.put("/api/v1/vendor/webhook", json={"url": receiver.url, **body}, headers=member)
    assert put.status_code == 200, put.text
    secret = put.json()["secret"]
    assert secret.startswith("whsec_")
    again = await b2b.api.put("/api/v1/vendor/webhook", json={"url": receiver.url, **body}, headers=member)
    assert again.json()["secret"] is None  # shown once: the same secret stays
    return vendor, member, secret


async def _deliveries(b2b: B2B, member: dict[str, str], **params: str) -> list[dict]:
    listed = await b2b.api.get("/api/v1/vendor/webhook/deliveries", params=params, headers=member)
    assert listed.status_code == 200, listed.text
    return listed.json()["items"]


async def test_order_completed_arrives_once_after_retries_and_verifies(b2b: B2B, receiver: Receiver) -> None:
    receiver.failures = 2
    vendor, member, secret = await _hooked(b2b, receiver)
    order = await b2b.order(vendor)
    assert order.status_code == 201, order.text
    await receiver.wait_for(lambda: receiver.answered(200))
    assert [c.status for c in receiver.calls] == [500, 500, 200]
    assert len({c.headers["webhook-id"] for c in receiver.calls}) == 1
    assert len({c.body for c in receiver.calls}) == 1  # the same event, byte for byte
    delivered = receiver.calls[-1]
    event = Webhook(secret).verify(delivered.body, delivered.headers)
    assert event["type"] == "order.completed"
    assert event["data"]["order_id"] == order.json()["id"]
    esims = event["data"]["esims"]
    assert len(esims) == 1 and esims[0]["lpa"].startswith("LPA:1$") and esims[0]["iccid"]
    with pytest.raises(Exception):  # noqa: B017  (any verification error)
        Webhook("whsec_" + "A" * 43 + "=").verify(delivered.body, delivered.headers)

    [row] = await _deliveries(b2b, member)
    assert row["status"] == "DELIVERED" and row["attempts"] == 3 and row["last_status_code"] == 200
    assert row["event_id"] == delivered.headers["webhook-id"] and row["next_attempt_at"] is None
    detail = await b2b.api.get(f"/api/v1/vendor/webhook/deliveries/{row['id']}", headers=member)
    assert detail.json()["payload"] == event
    admin = await b2b.api.get(f"/api/v1/admin/vendors/{vendor.id}/webhook-deliveries", headers=b2b.admin)
    assert [d["id"] for d in admin.json()["items"]] == [row["id"]]
    # No LPA string in the histories: the order's and the delivery's hold ids only.
    for workflow_id in (f"order-{order.json()['id']}", f"webhook-{row['event_id']}"):
        history = await b2b.temporal.get_workflow_handle(workflow_id).fetch_history()
        assert esims[0]["lpa"] not in history.to_json()
    # Nothing more arrives: one event, one delivery.
    assert len(await _deliveries(b2b, member, type="order.completed")) == 1
    await record_history(b2b, f"webhook-{row['event_id']}")


async def test_subscription_filter_ping_and_redeliver(b2b: B2B, receiver: Receiver) -> None:
    vendor, member, secret = await _hooked(b2b, receiver, events=["order.failed"])
    assert (await b2b.order(vendor)).status_code == 201
    ping = await b2b.api.post("/api/v1/vendor/webhook/test", headers=member)
    assert ping.status_code == 202, ping.text
    await receiver.wait_for(lambda: receiver.answered(200))
    [pinged] = receiver.calls  # the completed order was not subscribed to: only the ping came
    assert Webhook(secret).verify(pinged.body, pinged.headers)["type"] == "ping"
    assert [d["event_type"] for d in await _deliveries(b2b, member)] == ["ping"]

    delivery_id = ping.json()["delivery"]["id"]
    again = await b2b.api.post(f"/api/v1/vendor/webhook/deliveries/{delivery_id}/redeliver", headers=member)
    assert again.status_code == 202, again.text
    await receiver.wait_for(lambda: len(receiver.calls) == 2)
    assert receiver.calls[1].headers["webhook-id"] == pinged.headers["webhook-id"]
    assert receiver.calls[1].body == pinged.body
    [row] = await _deliveries(b2b, member, status="DELIVERED")
    assert row["redeliveries"] == 1 and row["attempts"] == 2

    other = await b2b.new_vendor()
    stranger = await team_member(b2b, other)
    assert (
        await b2b.api.get(f"/api/v1/vendor/webhook/deliveries/{delivery_id}", headers=stranger)
    ).status_code == 404
    viewer = await team_member(b2b, vendor, "viewer")
    assert (await b2b.api.get("/api/v1/vendor/webhook/deliveries", headers=viewer)).status_code == 403
    missing = uuid.uuid4()
    assert (
        await b2b.api.get(f"/api/v1/vendor/webhook/deliveries/{missing}", headers=member)
    ).status_code == 404


async def test_no_url_no_delivery_and_rotation_signs_with_both(b2b: B2B, receiver: Receiver) -> None:
    quiet = await b2b.new_vendor(balance=100_000)
    assert (await b2b.order(quiet)).status_code == 201
    _, member, old = await _hooked(b2b, receiver)
    rotated = await b2b.api.post("/api/v1/vendor/webhook/rotate-secret", headers=member)
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    assert new != old and rotated.json()["previous_secret_expires_at"]
    assert (await b2b.api.post("/api/v1/vendor/webhook/test", headers=member)).status_code == 202
    await receiver.wait_for(lambda: receiver.answered(200))
    [call] = receiver.calls
    assert len(call.headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        assert Webhook(secret).verify(call.body, call.headers)["type"] == "ping"
    async with b2b.sessions() as session:
        from sqlalchemy import func, select

        from ttelgo.models import WebhookDelivery

        counted = await session.scalar(
            select(func.count())
            .select_from(WebhookDelivery)
            .where(WebhookDelivery.vendor_id == uuid.UUID(quiet.id))
        )
    assert counted == 0


async def test_a_failed_order_sends_order_failed(b2b: B2B, receiver: Receiver) -> None:
    vendor, member, secret = await _hooked(b2b, receiver)
    b2b.sim.faults(**{"POST /orders": {"no_bundles_left": True}})
    order = await b2b.order(vendor)
    assert order.status_code == 201 and order.json()["status"] == "FAILED"
    await receiver.wait_for(lambda: receiver.answered(200))
    [call] = receiver.calls
    event = Webhook(secret).verify(call.body, call.headers)
    assert event["type"] == "order.failed" and event["data"]["failure_code"] == "SupplierNoStock"
    assert "esims" not in event["data"]
    [row] = await _deliveries(b2b, member)
    assert row["event_type"] == "order.failed" and row["status"] == "DELIVERED"
