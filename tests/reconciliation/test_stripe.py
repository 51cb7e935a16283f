"""Stripe compared with our records: refunds made outside TTelGo are recorded on the order and payment,
and a payment Stripe took that our order never heard of is reported."""

from __future__ import annotations

import uuid

import httpx
import stripe
from sqlalchemy import select

from tests.b2c.conftest import STRIPE_KEY
from tests.reconciliation.conftest import Recon
from ttelgo.models import Payment, Refund


async def _payment(recon: Recon, order_id: str) -> Payment:
    async with recon.world.sessions() as session:
        payment = await session.scalar(select(Payment).where(Payment.order_id == uuid.UUID(order_id)))
        assert payment is not None
        return payment


def _dashboard(recon: Recon) -> stripe.StripeClient:
    """What someone in the Stripe dashboard does: straight to Stripe, nothing through TTelGo."""
    return stripe.StripeClient(STRIPE_KEY, base_addresses={"api": recon.localstripe})


async def test_a_refund_made_in_the_stripe_dashboard_is_recorded_on_the_order(recon: Recon) -> None:
    customer = await recon.world.customer()
    order = await recon.world.paid_order(customer)
    payment = await _payment(recon, order["id"])
    partial = _dashboard(recon).v1.refunds.create(
        params={"payment_intent": payment.provider_payment_id, "amount": 100}
    )

    run = await recon.run()
    [found] = [f for f in run["findings"] if f["kind"] == "EXTERNAL_REFUND_RECORDED"]
    assert (found["subject"], found["order_id"], found["action"]) == (partial.id, order["id"], "RECORDED")
    row = await recon.order_row(order["id"])
    assert (row.status.value, row.refunded_minor) == ("PARTIALLY_REFUNDED", 100)
    payment = await _payment(recon, order["id"])
    assert (payment.status.value, payment.refunded_minor) == ("PARTIALLY_REFUNDED", 100)
    async with recon.world.sessions() as session:
        refund = await session.scalar(select(Refund).where(Refund.provider_refund_id == partial.id))
    assert refund is not None and refund.status.value == "SUCCEEDED" and refund.amount_minor == 100
    [audit] = await recon.audit(target_type="order", target_id=order["id"])
    assert audit.action == "reconciliation.refund.record_external"
    assert audit.before["order_status"] == "COMPLETED" and audit.after["order_refunded_minor"] == 100
    assert "disputes not checked" in " ".join(run["notes"])  # localstripe has no disputes

    again = await recon.run()
    assert [f for f in again["findings"] if f["kind"] == "EXTERNAL_REFUND_RECORDED"] == []
    assert (await recon.order_row(order["id"])).refunded_minor == 100

    # (localstripe refunds the whole charge when no amount is given, even after a partial refund)
    rest = _dashboard(recon).v1.refunds.create(
        params={"payment_intent": payment.provider_payment_id, "amount": order["total_minor"] - 100}
    )
    third = await recon.run()
    assert [f["subject"] for f in third["findings"] if f["kind"] == "EXTERNAL_REFUND_RECORDED"] == [rest.id]
    row = await recon.order_row(order["id"])
    assert (row.status.value, row.refunded_minor) == ("REFUNDED", order["total_minor"])
    assert (await _payment(recon, order["id"])).status.value == "REFUNDED"


async def test_our_own_refunds_are_not_taken_for_external_ones(recon: Recon) -> None:
    customer = await recon.world.customer()
    order = await recon.world.paid_order(customer)
    admin = await recon.world.admin()
    refunded = await recon.api.post(
        f"/api/v1/admin/orders/{order['id']}/refund",
        json={"reason": "goodwill", "amount_minor": 100},
        headers={**admin, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert refunded.status_code == 201, refunded.text
    await recon.world.wait_for(
        f"/api/v1/admin/refunds/{refunded.json()['id']}", admin, "SUCCEEDED", within_s=30
    )

    run = await recon.run()
    assert [f for f in run["findings"] if f["kind"].startswith("EXTERNAL_REFUND")] == []
    assert (await recon.order_row(order["id"])).refunded_minor == 100


async def test_a_payment_whose_webhook_never_arrived_is_reported(recon: Recon) -> None:
    customer = await recon.world.customer()
    created = await recon.world.order(customer)
    assert created.status_code == 201, created.text
    order = created.json()
    # Stripe's events stop reaching us (an endpoint misconfigured in the dashboard); the customer pays.
    async with httpx.AsyncClient() as http:
        moved = await http.post(
            f"{recon.localstripe}/_config/webhooks/ttelgo",
            data={"url": "http://127.0.0.1:9/nowhere", "secret": "whsec_elsewhere"},
            auth=(STRIPE_KEY, ""),
        )
        moved.raise_for_status()
    intent_id = order["payment"]["payment_intent_id"]
    assert (await recon.world.pay(intent_id)).status == "succeeded"

    run = await recon.run()
    [found] = [f for f in run["findings"] if f["kind"] == "PAYMENT_NOT_RECORDED"]
    assert (found["subject"], found["order_id"]) == (intent_id, order["id"])
    assert found["detail"]["order_status"] == "PAYMENT_PENDING"
    assert run["summary"]["PAYMENT_NOT_RECORDED"] == 1
