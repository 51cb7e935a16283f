"""Abuse caps on card payments: a customer may leave at most MAX_OPEN_UNPAID_ORDERS card orders unpaid;
the next is refused before any PaymentIntent or workflow exists."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import func, select

from api.order_views import order_id_for
from tests.b2c.conftest import B2C
from ttelgo.models import Order, Payment


async def _counts(b2c: B2C) -> tuple[int, int]:
    async with b2c.sessions() as session:
        orders = await session.scalar(select(func.count()).select_from(Order))
        payments = await session.scalar(select(func.count()).select_from(Payment))
    return orders or 0, payments or 0


async def test_the_sixth_unpaid_card_order_is_refused_and_starts_nothing(b2c: B2C) -> None:
    customer = await b2c.customer()
    keys = [str(uuid.uuid4()) for _ in range(5)]
    created = [await b2c.order(customer, key=key) for key in keys]
    assert [c.status_code for c in created] == [201] * 5

    key = str(uuid.uuid4())
    refused = await b2c.order(customer, key=key)
    assert refused.status_code == 429, refused.text
    assert refused.json()["code"] == "TOO_MANY_UNPAID_ORDERS" and refused.json()["limit"] == 5
    assert await _counts(b2c) == (5, 5), "no order row, no PaymentIntent"
    me = await b2c.api.get("/api/v1/me", headers=customer.headers)
    refused_id = order_id_for(f"user:{me.json()['id']}", key)
    assert not [w async for w in b2c.temporal.list_workflows(f"WorkflowId = 'order-{refused_id}'")]

    # A retry of an order that got through is still answered, and another customer is not affected.
    replay = await b2c.order(customer, key=keys[0])
    assert replay.status_code == 201 and replay.json()["id"] == created[0].json()["id"]
    assert (await b2c.order(await b2c.customer())).status_code == 201

    # Canceling one frees a place, and the refused key was not spent on the refusal.
    order_id = created[0].json()["id"]
    canceled = await b2c.api.post(f"/api/v1/orders/{order_id}/cancel", headers=customer.headers)
    assert canceled.status_code == 200, canceled.text
    assert (await b2c.order(customer, key=key)).status_code == 201


async def test_concurrent_orders_cannot_slip_past_the_cap(b2c: B2C) -> None:
    customer = await b2c.customer()
    answers = await asyncio.gather(*(b2c.order(customer) for _ in range(8)))
    statuses = sorted(a.status_code for a in answers)
    assert set(statuses) <= {201, 429}, [a.text for a in answers]
    codes = {a.json()["code"] for a in answers if a.status_code == 429}
    assert codes <= {"TOO_MANY_UNPAID_ORDERS"}
    async with b2c.sessions() as session:
        orders = await session.scalar(select(func.count()).select_from(Order))
    assert orders == statuses.count(201) <= 5
