"""Recording a Stripe event in one statement (issue 16) keeps its guarantees: one row per event however many
deliveries race, an event nothing acts on stored as IGNORED at once, a delivery that stopped before
handing its event on (row left RECEIVED) finished by the next one, and one answered 503 because Temporal
was down handed on by the very next delivery."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from sqlalchemy import select, update

from api.routers import webhooks
from tests.b2c.conftest import B2C, b2c, intent_event, localstripe, sign  # noqa: F401 (fixtures)
from tests.b2c.test_stripe_webhook import _pending_order
from tests.support.stack import api_client
from ttelgo.models import WebhookEvent, WebhookEventStatus
from ttelgo.sandbox.processes import free_port


async def _rows(world: B2C, event_id: str) -> list[WebhookEvent]:
    async with world.sessions() as session:
        query = select(WebhookEvent).where(
            WebhookEvent.provider == "stripe", WebhookEvent.event_id == event_id
        )
        return list(await session.scalars(query))


async def _stall(world: B2C, event_id: str) -> None:
    """As if the delivery that stored it had died before handing it on, a while ago."""
    async with world.sessions() as session, session.begin():
        await session.execute(
            update(WebhookEvent)
            .where(WebhookEvent.event_id == event_id)
            .values(
                status=WebhookEventStatus.RECEIVED,
                error=None,
                processed_at=None,
                created_at=datetime.now(UTC) - timedelta(minutes=5),
            )
        )


async def test_concurrent_deliveries_of_one_event_make_one_row_and_one_acceptance(b2c: B2C) -> None:  # noqa: F811
    customer = await b2c.customer()
    order = (await b2c.order(customer)).json()
    intent = await b2c.stripe.retrieve_intent(order["payment"]["payment_intent_id"])
    event = intent_event("payment_intent.processing", intent, {"workflow_id": f"order-{order['id']}"})

    answers = await asyncio.gather(*(b2c.deliver(event) for _ in range(8)))

    statuses = sorted(answer.json()["status"] for answer in answers)
    assert all(answer.status_code == 200 for answer in answers)
    assert statuses == ["accepted"] + ["duplicate"] * 7
    [row] = await _rows(b2c, event["id"])
    assert row.status is WebhookEventStatus.DELIVERED and row.processed_at is not None


async def test_an_event_nothing_acts_on_is_stored_ignored_with_its_reason(b2c: B2C) -> None:  # noqa: F811
    event = {"id": f"evt_{uuid.uuid4().hex[:20]}", "type": "customer.created", "data": {"object": {}}}
    first, again = await b2c.deliver(event), await b2c.deliver(event)
    assert first.json()["status"] == "ignored" and again.json()["status"] == "duplicate"
    [row] = await _rows(b2c, event["id"])
    assert row.status is WebhookEventStatus.IGNORED and row.error == "event type not handled"
    assert row.processed_at is not None


async def test_a_stalled_event_is_finished_by_the_next_delivery(b2c: B2C) -> None:  # noqa: F811
    customer = await b2c.customer()
    order = (await b2c.order(customer)).json()
    intent = await b2c.stripe.retrieve_intent(order["payment"]["payment_intent_id"])
    handled = intent_event("payment_intent.processing", intent, {"workflow_id": f"order-{order['id']}"})
    unhandled = {"id": f"evt_{uuid.uuid4().hex[:20]}", "type": "customer.created", "data": {"object": {}}}
    for event, outcome, status in (
        (handled, "accepted", WebhookEventStatus.DELIVERED),
        (unhandled, "ignored", WebhookEventStatus.IGNORED),
    ):
        assert (await b2c.deliver(event)).status_code == 200
        await _stall(b2c, event["id"])
        redelivered = await b2c.deliver(event)
        assert redelivered.json()["status"] == outcome, event["type"]
        [row] = await _rows(b2c, event["id"])
        assert row.status is status and row.processed_at is not None, event["type"]


async def test_a_redelivery_right_after_temporal_was_down_hands_the_event_on(b2c: B2C) -> None:  # noqa: F811
    """Answered 503 because Temporal was unreachable, the event stays to be handed on: a resend seconds
    later (well inside the stall grace) hands it on instead of taking it for a duplicate in progress."""
    order, intent, metadata, headers = await _pending_order(b2c)
    event = intent_event("payment_intent.succeeded", intent, metadata)
    no_temporal = b2c.settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})
    async with api_client(no_temporal) as down:
        body, signature = sign(event)
        refused = await down.post(
            "/api/v1/webhooks/stripe",
            content=body,
            headers={"Stripe-Signature": signature, "Content-Type": "application/json"},
        )
    assert refused.status_code == 503, refused.text
    [row] = await _rows(b2c, event["id"])
    assert row.status is WebhookEventStatus.RECEIVED and row.processed_at is None

    redelivered = await b2c.deliver(event)
    assert redelivered.status_code == 200 and redelivered.json()["status"] == "accepted"
    await b2c.wait_for(f"/api/v1/orders/{order['id']}", headers, "COMPLETED")
    [row] = await _rows(b2c, event["id"])
    assert row.status is WebhookEventStatus.DELIVERED and row.error is None
    # Handed on once: any further delivery is a duplicate, and a second signal would change nothing.
    assert (await b2c.deliver(event)).json()["status"] == "duplicate"
    assert b2c.sim.stats()["orders"]["transactions"] == 1


async def test_a_late_temporal_error_never_unfinishes_a_delivered_row(b2c: B2C) -> None:  # noqa: F811
    """Temporal may start the run although the call answering it failed; if that run has already marked the
    row DELIVERED, the late "not handed on" marking must leave it so (a RECEIVED row would wait forever)."""
    order, intent, metadata, headers = await _pending_order(b2c)
    event = intent_event("payment_intent.succeeded", intent, metadata)
    assert (await b2c.deliver(event)).json()["status"] == "accepted"
    await b2c.wait_for(f"/api/v1/orders/{order['id']}", headers, "COMPLETED")
    engine = b2c.sessions.kw["bind"]
    state = SimpleNamespace(engine=engine, business_metrics=SimpleNamespace(webhook=lambda *_: None))
    late = SimpleNamespace(app=SimpleNamespace(state=state))
    await webhooks._not_handed_on(late, "stripe", event["id"], RuntimeError("call timed out"))  # type: ignore[arg-type]
    [row] = await _rows(b2c, event["id"])
    assert row.status is WebhookEventStatus.DELIVERED and row.error is None
