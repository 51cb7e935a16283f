"""B2C end to end: register → order → pay at localstripe → its signed webhook → eSIM Go → COMPLETED."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from tests.b2c.conftest import B2C, BUNDLE, DECLINED, Customer
from ttelgo.models import Notification, Order, Payment, PaymentStatus, WebhookEvent, WebhookEventStatus


async def _retail_price(b2c: B2C) -> int:
    return (await b2c.api.get(f"/api/v1/catalogue/bundles/{BUNDLE}")).json()["price"]["amount_minor"]


async def _ordered(b2c: B2C, customer: Customer, **kwargs: object) -> dict:
    response = await b2c.order(customer, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == 201, response.text
    return response.json()


async def test_order_paid_by_card_completes_with_esims_and_a_notification(b2c: B2C) -> None:
    customer = await b2c.customer()
    order = await _ordered(b2c, customer, quantity=2)
    price = await _retail_price(b2c)
    assert order["status"] == "PAYMENT_PENDING"
    assert order["unit_price_minor"] == price and order["total_minor"] == 2 * price
    payment = order["payment"]
    assert payment["amount_minor"] == 2 * price and payment["currency"] == order["currency"]
    assert payment["client_secret"].startswith(payment["payment_intent_id"])

    assert (await b2c.pay(payment["payment_intent_id"])).status == "succeeded"
    path = f"/api/v1/orders/{order['id']}"
    done = await b2c.wait_for(path, customer.headers, "COMPLETED")
    assert len(done["esims"]) == 2 and done["failure_code"] is None
    png = await b2c.api.get(done["esims"][0]["qr_code_url"], headers=customer.headers)
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    assert (await b2c.api.get(f"{path}/esims", headers=customer.headers)).json() == done["esims"]
    assert b2c.sim.stats()["orders"]["transactions"] == 1

    # The amount charged is the order total, and the payment record says so.
    assert (await b2c.stripe.retrieve_intent(payment["payment_intent_id"])).amount_minor == 2 * price
    async with b2c.sessions() as session:
        row = await session.scalar(select(Payment).where(Payment.order_id == uuid.UUID(order["id"])))
        assert row is not None and row.status is PaymentStatus.SUCCEEDED and row.amount_minor == 2 * price
        note = await session.scalar(
            select(Notification).where(
                Notification.order_id == uuid.UUID(order["id"]), Notification.template == "esims_ready"
            )
        )
        assert note is not None and note.recipient == customer.email and note.template == "esims_ready"
        assert sorted(e["lpa"] for e in note.payload["esims"]) == sorted(e["lpa"] for e in done["esims"])
        assert all(e["qr_png_base64"] for e in note.payload["esims"])
        delivered = await session.scalar(
            select(func.count()).where(
                WebhookEvent.provider == "stripe",
                WebhookEvent.target_workflow_id == f"order-{order['id']}",
                WebhookEvent.status == WebhookEventStatus.DELIVERED,
            )
        )
        assert delivered == 1  # localstripe's payment_intent.succeeded

    listed = (await b2c.api.get("/api/v1/orders", headers=customer.headers)).json()
    assert [o["id"] for o in listed["items"]] == [order["id"]] and listed["total"] == 1


async def test_declined_card_then_a_good_one_completes(b2c: B2C) -> None:
    customer = await b2c.customer()
    order = await _ordered(b2c, customer)
    intent_id = order["payment"]["payment_intent_id"]
    path = f"/api/v1/orders/{order['id']}"

    assert (await b2c.pay(intent_id, DECLINED)).status == "requires_payment_method"
    failed = await b2c.wait_for(path, customer.headers, "PAYMENT_FAILED")
    assert failed["failure_code"] == "PAYMENT_FAILED" and "declined" in failed["failure_reason"]
    # Still payable: the same intent is handed out again, for the same amount.
    again = await b2c.api.post(
        "/api/v1/payments/intents/orders", json={"order_id": order["id"]}, headers=customer.headers
    )
    assert again.status_code == 200 and again.json()["payment_intent_id"] == intent_id
    assert again.json()["amount_minor"] == order["total_minor"]

    assert (await b2c.pay(intent_id)).status == "succeeded"
    done = await b2c.wait_for(path, customer.headers, "COMPLETED")
    assert done["failure_code"] is None and len(done["esims"]) == 1


@pytest.mark.parametrize("b2c", [{"window_minutes": 0.05}], indirect=True)
async def test_unpaid_order_expires_and_its_intent_is_canceled(b2c: B2C) -> None:
    customer = await b2c.customer()
    order = await _ordered(b2c, customer)
    await b2c.wait_for(f"/api/v1/orders/{order['id']}", customer.headers, "EXPIRED", within_s=20)
    assert (await b2c.stripe.retrieve_intent(order["payment"]["payment_intent_id"])).status == "canceled"
    async with b2c.sessions() as session:
        row = await session.scalar(select(Payment).where(Payment.order_id == uuid.UUID(order["id"])))
        assert row is not None and row.status is PaymentStatus.CANCELED
    assert b2c.sim.stats()["orders"]["transactions"] == 0


async def test_customer_cancels_an_unpaid_order(b2c: B2C) -> None:
    customer = await b2c.customer()
    order = await _ordered(b2c, customer)
    cancel = f"/api/v1/orders/{order['id']}/cancel"
    canceled = await b2c.api.post(cancel, headers=customer.headers)
    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["status"] == "CANCELED"
    assert (await b2c.stripe.retrieve_intent(order["payment"]["payment_intent_id"])).status == "canceled"

    again = await b2c.api.post(cancel, headers=customer.headers)
    assert again.status_code == 409 and again.json()["code"] == "ORDER_INVALID_STATE"
    pay = await b2c.api.post(
        "/api/v1/payments/intents/orders", json={"order_id": order["id"]}, headers=customer.headers
    )
    assert pay.status_code == 409


async def test_paid_order_cannot_be_canceled(b2c: B2C) -> None:
    customer = await b2c.customer()
    order = await _ordered(b2c, customer)
    await b2c.pay(order["payment"]["payment_intent_id"])
    await b2c.wait_for(f"/api/v1/orders/{order['id']}", customer.headers, "COMPLETED")
    refused = await b2c.api.post(f"/api/v1/orders/{order['id']}/cancel", headers=customer.headers)
    assert refused.status_code == 409 and refused.json()["code"] == "ORDER_INVALID_STATE"


async def test_permanent_supplier_failure_after_payment_is_refunded(b2c: B2C) -> None:
    b2c.sim.faults(**{"POST /orders": {"no_bundles_left": True}})
    customer = await b2c.customer()
    order = await _ordered(b2c, customer)
    await b2c.pay(order["payment"]["payment_intent_id"])
    refunded = await b2c.wait_for(f"/api/v1/orders/{order['id']}", customer.headers, "REFUNDED")
    assert refunded["esims"] == [] and refunded["failure_code"]
    async with b2c.sessions() as session:
        row = await session.scalar(select(Payment).where(Payment.order_id == uuid.UUID(order["id"])))
        stored = await session.get(Order, uuid.UUID(order["id"]))
        assert row is not None and row.status is PaymentStatus.REFUNDED
        assert row.refunded_minor == order["total_minor"]
        assert stored is not None and stored.refunded_minor == order["total_minor"]


async def test_the_same_key_gives_the_same_order_and_one_payment(b2c: B2C) -> None:
    customer = await b2c.customer()
    key = str(uuid.uuid4())
    first = await _ordered(b2c, customer, key=key)
    second = await _ordered(b2c, customer, key=key)
    assert second == first
    async with b2c.sessions() as session:
        count = await session.scalar(select(func.count()).where(Payment.order_id == uuid.UUID(first["id"])))
    assert count == 1


async def test_customers_cannot_see_pay_or_price_anothers_order(b2c: B2C) -> None:
    alice, mallory = await b2c.customer(), await b2c.customer()
    order = await _ordered(b2c, alice)
    base = f"/api/v1/orders/{order['id']}"
    for method, path, body in (
        ("GET", base, None),
        ("GET", f"{base}/esims", None),
        ("POST", f"{base}/cancel", None),
        ("POST", "/api/v1/payments/intents/orders", {"order_id": order["id"]}),
    ):
        response = await b2c.api.request(method, path, json=body, headers=mallory.headers)
        assert response.status_code == 404 and response.json()["code"] == "ORDER_NOT_FOUND", (method, path)
    assert (await b2c.api.get("/api/v1/orders", headers=mallory.headers)).json()["total"] == 0

    # The amount is the server's: a client-sent price is refused, and so is an amount when paying.
    priced = await b2c.order(alice, amount_minor=1)
    assert priced.status_code == 422
    pay = await b2c.api.post(
        "/api/v1/payments/intents/orders",
        json={"order_id": order["id"], "amount_minor": 1},
        headers=alice.headers,
    )
    assert pay.status_code == 422
    async with b2c.sessions() as session:
        assert await session.scalar(select(func.count()).where(Order.user_id.is_not(None))) == 1


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"bundle_code": "no_such_bundle"}, 422, "BUNDLE_UNKNOWN"),
        ({"bundle_code": BUNDLE, "quantity": 6}, 422, "VALIDATION_ERROR"),
        ({"bundle_code": BUNDLE, "quantity": 0}, 422, "VALIDATION_ERROR"),
    ],
)
async def test_bad_orders_are_refused_and_change_nothing(
    b2c: B2C, body: dict, status: int, code: str
) -> None:
    customer = await b2c.customer()
    response = await b2c.api.post(
        "/api/v1/orders", json=body, headers={**customer.headers, "Idempotency-Key": str(uuid.uuid4())}
    )
    assert response.status_code == status and response.json()["code"] == code
    async with b2c.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Order)) == 0
        assert await session.scalar(select(func.count()).select_from(Payment)) == 0
