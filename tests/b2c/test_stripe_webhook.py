"""The Stripe webhook: signature checks on the raw body, each event once, forward-only delivery."""

from __future__ import annotations

import asyncio
import time
import uuid

from sqlalchemy import func, select

from tests.b2c.conftest import B2C, intent_event, sign
from ttelgo.models import WebhookEvent, WebhookEventStatus
from ttelgo.payments import IntentRef


async def _events(b2c: B2C, **where: object) -> list[WebhookEvent]:
    async with b2c.sessions() as session:
        query = select(WebhookEvent).where(WebhookEvent.provider == "stripe")
        for name, value in where.items():
            query = query.where(getattr(WebhookEvent, name) == value)
        return list(await session.scalars(query))


async def _pending_order(b2c: B2C) -> tuple[dict, IntentRef, dict[str, str], dict[str, str]]:
    customer = await b2c.customer()
    response = await b2c.order(customer)
    assert response.status_code == 201, response.text
    order = response.json()
    intent = await b2c.stripe.retrieve_intent(order["payment"]["payment_intent_id"])
    metadata = {"workflow_id": f"order-{order['id']}", "order_id": order["id"]}
    return order, intent, metadata, customer.headers


async def test_forged_missing_and_stale_signatures_are_400_and_store_nothing(b2c: B2C) -> None:
    order, intent, metadata, headers = await _pending_order(b2c)
    event = intent_event("payment_intent.succeeded", intent, metadata)
    body, _ = sign(event)
    for signature_headers in (
        {},
        {"Stripe-Signature": sign(event, secret="whsec_not_ours")[1]},
        {"Stripe-Signature": sign(event, at=int(time.time()) - 301)[1]},
        {"Stripe-Signature": "t=1,v1=00"},
    ):
        response = await b2c.api.post("/api/v1/webhooks/stripe", content=body, headers=signature_headers)
        assert response.status_code == 400, signature_headers
        assert response.json()["code"] == "WEBHOOK_SIGNATURE_INVALID"
    # A body altered after signing fails too.
    _, signature = sign(event)
    tampered = body.replace(str(intent.amount_minor).encode(), b"1", 1)
    response = await b2c.api.post(
        "/api/v1/webhooks/stripe", content=tampered, headers={"Stripe-Signature": signature}
    )
    assert response.status_code == 400
    assert await _events(b2c) == []
    pending = (await b2c.api.get(f"/api/v1/orders/{order['id']}", headers=headers)).json()
    assert pending["status"] == "PAYMENT_PENDING"


async def test_five_duplicate_deliveries_have_one_effect(b2c: B2C) -> None:
    order, intent, metadata, headers = await _pending_order(b2c)
    event = intent_event("payment_intent.succeeded", intent, metadata, client_secret=f"{intent.id}_secret_x1")
    answers = await asyncio.gather(*(b2c.deliver(event) for _ in range(5)))
    assert all(a.status_code == 200 for a in answers)
    assert sorted(a.json()["status"] for a in answers) == ["accepted"] + ["duplicate"] * 4
    await b2c.wait_for(f"/api/v1/orders/{order['id']}", headers, "COMPLETED")
    assert b2c.sim.stats()["orders"]["transactions"] == 1
    rows = await _events(b2c, event_id=event["id"])
    assert len(rows) == 1 and rows[0].status is WebhookEventStatus.DELIVERED
    # Kept without the client secret, which would let whoever reads the table confirm payments.
    assert "client_secret" not in rows[0].payload["data"]["object"]
    assert rows[0].payload["data"]["object"]["id"] == intent.id


async def test_succeeded_before_processing_ends_paid(b2c: B2C) -> None:
    order, intent, metadata, headers = await _pending_order(b2c)
    succeeded = intent_event("payment_intent.succeeded", intent, metadata)
    processing = intent_event("payment_intent.processing", intent, metadata)
    failed = intent_event("payment_intent.payment_failed", intent, metadata)
    for event in (succeeded, processing, failed):  # late, out-of-order events
        assert (await b2c.deliver(event)).status_code == 200
    done = await b2c.wait_for(f"/api/v1/orders/{order['id']}", headers, "COMPLETED")
    assert done["failure_code"] is None
    assert b2c.sim.stats()["orders"]["transactions"] == 1


async def test_unknown_types_and_unknown_or_closed_workflows_are_recorded_and_acknowledged(b2c: B2C) -> None:
    order, intent, metadata, headers = await _pending_order(b2c)
    other = {"id": f"evt_{uuid.uuid4().hex[:20]}", "type": "customer.created", "data": {"object": {}}}
    stray = intent_event("payment_intent.succeeded", intent, {"workflow_id": "order-nobody"})
    for event in (other, stray):
        response = await b2c.deliver(event)
        assert response.status_code == 200 and response.json()["status"] == "ignored"

    await b2c.deliver(intent_event("payment_intent.succeeded", intent, metadata))
    await b2c.wait_for(f"/api/v1/orders/{order['id']}", headers, "COMPLETED")
    # COMPLETED is written before the run has sent its news; the charge event must find the run closed.
    await b2c.temporal.get_workflow_handle(f"order-{order['id']}").result()
    refunded = {
        "id": f"evt_{uuid.uuid4().hex[:20]}",
        "type": "charge.refunded",
        "created": int(time.time()),
        "data": {
            "object": {"id": "ch_x", "object": "charge", "payment_intent": intent.id, "amount_refunded": 1}
        },
    }
    for _ in range(2):
        assert (await b2c.deliver(refunded)).status_code == 200
    ignored = await _events(b2c, status=WebhookEventStatus.IGNORED)
    by_id = {e.event_id: e for e in ignored}
    assert set(by_id) == {other["id"], stray["id"], refunded["id"]}
    assert by_id[other["id"]].error == "event type not handled"
    # No metadata on the charge: the payments row named the (now closed) workflow.
    assert by_id[refunded["id"]].target_workflow_id == f"order-{order['id']}"
    async with b2c.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(WebhookEvent)) == 4


async def test_a_stale_decline_after_processing_does_not_mark_the_order_failed(b2c: B2C) -> None:
    order, intent, metadata, headers = await _pending_order(b2c)
    processing = intent_event("payment_intent.processing", intent, metadata)
    stale = intent_event("payment_intent.payment_failed", intent, metadata)
    stale["created"] = processing["created"] - 60  # sent before `processing`, delivered after it
    for event in (processing, stale):
        assert (await b2c.deliver(event)).status_code == 200
    path = f"/api/v1/orders/{order['id']}"
    await asyncio.sleep(1)  # let the workflow act on both signals before looking
    assert (await b2c.api.get(path, headers=headers)).json()["status"] == "PAYMENT_PENDING"
    assert (await b2c.deliver(intent_event("payment_intent.succeeded", intent, metadata))).status_code == 200
    await b2c.wait_for(path, headers, "COMPLETED")
