"""Stripe compared with our records: refunds made outside TTelGo are recorded on the order and payment,
and a payment Stripe took that our order never heard of is reported."""

from __future__ import annotations

import uuid

import httpx
import pytest
import stripe
from sqlalchemy import select, text, update

from activities import reconciliation
from tests.b2c.conftest import STRIPE_KEY
from tests.reconciliation.conftest import Recon
from ttelgo.models import Order, OrderStatus, Payment, PaymentStatus, Refund


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


async def _paid_unheard(recon: Recon) -> dict:
    """A card order whose customer paid while Stripe's events stopped reaching us (an endpoint
    misconfigured in the dashboard): Stripe has the money, our records do not know."""
    customer = await recon.world.customer()
    created = await recon.world.order(customer)
    assert created.status_code == 201, created.text
    order = created.json()
    async with httpx.AsyncClient() as http:
        moved = await http.post(
            f"{recon.localstripe}/_config/webhooks/ttelgo",
            data={"url": "http://127.0.0.1:9/nowhere", "secret": "whsec_elsewhere"},
            auth=(STRIPE_KEY, ""),
        )
        moved.raise_for_status()
    assert (await recon.world.pay(order["payment"]["payment_intent_id"])).status == "succeeded"
    return order


def _unrecorded(run: dict) -> list[dict]:
    return [f for f in run["findings"] if f["kind"] == "PAYMENT_NOT_RECORDED"]


async def test_a_payment_whose_webhook_never_arrived_is_reported(recon: Recon) -> None:
    order = await _paid_unheard(recon)
    intent_id = order["payment"]["payment_intent_id"]

    # Its workflow still waits for the payment (the webhook may just be late; the payment window's end
    # asks Stripe itself): not a discrepancy yet.
    early = await recon.run()
    assert _unrecorded(early) == []

    # The workflow is gone: nothing will notice the money now but reconciliation.
    await recon.world.temporal.get_workflow_handle(f"order-{order['id']}").terminate("lost")
    run = await recon.run()
    [found] = _unrecorded(run)
    assert (found["subject"], found["order_id"]) == (intent_id, order["id"])
    assert found["detail"]["order_status"] == "PAYMENT_PENDING"
    assert found["detail"]["workflow"] == "TERMINATED"
    assert run["summary"]["PAYMENT_NOT_RECORDED"] == 1


async def test_money_kept_for_a_failed_order_is_reported(recon: Recon) -> None:
    kept = await _paid_unheard(recon)
    refund_failed = await _paid_unheard(recon)
    # Both workflows ended with the order FAILED while the payment succeeded (recorded late, say); one of
    # them failed its compensation refund, which an operator already sees as REFUND_FAILED.
    originals = {o["id"]: (await _payment(recon, o["id"])).status for o in (kept, refund_failed)}
    for order, code in ((kept, "ORDER_WORKFLOW_FAILED"), (refund_failed, "REFUND_FAILED")):
        await recon.world.temporal.get_workflow_handle(f"order-{order['id']}").terminate("ended")
        async with recon.world.sessions() as session, session.begin():
            await session.execute(
                update(Order)
                .where(Order.id == uuid.UUID(order["id"]))
                .values(status=OrderStatus.FAILED, failure_code=code)
            )
            await session.execute(
                update(Payment)
                .where(Payment.order_id == uuid.UUID(order["id"]))
                .values(status=PaymentStatus.SUCCEEDED)
            )
    try:
        run = await recon.run()
        [found] = _unrecorded(run)
        assert found["order_id"] == kept["id"], found
        assert found["detail"]["problem"] == "money kept for a failed order"
        assert found["detail"]["order_status"] == "FAILED"
    finally:  # as the invariants want them back (they report the same thing)
        async with recon.world.sessions() as session, session.begin():
            for order in (kept, refund_failed):
                await session.execute(
                    update(Order)
                    .where(Order.id == uuid.UUID(order["id"]))
                    .values(status=OrderStatus.PAYMENT_PENDING, failure_code=None)
                )
                await session.execute(
                    update(Payment)
                    .where(Payment.order_id == uuid.UUID(order["id"]))
                    .values(status=originals[order["id"]])
                )


async def test_a_stripe_listing_cut_short_says_so(recon: Recon, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reconciliation, "STRIPE_LISTING_LIMIT", 1)
    customer = await recon.world.customer()
    assert (await recon.world.order(customer)).status_code == 201

    run = await recon.run()
    assert any("listing of payment intents stopped at its limit of 1" in n for n in run["notes"]), run


async def test_a_dashboard_refund_of_a_refund_failed_order_settles_it(recon: Recon) -> None:
    customer = await recon.world.customer()
    order = await recon.world.paid_order(customer)
    # As the order workflow leaves a card order whose automatic refund Stripe refused, eSIMs never stored.
    async with recon.world.sessions() as session, session.begin():
        await session.execute(
            update(Order)
            .where(Order.id == uuid.UUID(order["id"]))
            .values(status=OrderStatus.FAILED, failure_code="REFUND_FAILED")
        )
        await session.execute(text("DELETE FROM esims WHERE order_id = :id"), {"id": uuid.UUID(order["id"])})
    payment = await _payment(recon, order["id"])
    _dashboard(recon).v1.refunds.create(
        params={"payment_intent": payment.provider_payment_id, "amount": order["total_minor"]}
    )

    await recon.run()

    row = await recon.order_row(order["id"])
    assert (row.status.value, row.refunded_minor) == ("REFUNDED", order["total_minor"])
    assert (await _payment(recon, order["id"])).status is PaymentStatus.REFUNDED
