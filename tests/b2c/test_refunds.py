"""Refunds and admin order operations: card refunds through localstripe, wallet refunds through the
ledger, revocation at the eSIM Go simulator, limits under races, and the audit trail of each action."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any

import httpx
from sqlalchemy import delete, func, select, update
from temporalio import activity

from activities.contracts import CREATE_CARD_REFUND, READ_CARD_REFUND, CardRefund, RefundInput
from activities.registry import build_activities
from tests.b2b.conftest import B2B, VendorHandle
from tests.b2c.conftest import B2C
from ttelgo.models import (
    Esim,
    EsimStatus,
    LedgerEntryType,
    Order,
    OrderStatus,
    Payment,
    PaymentStatus,
    VendorLedgerEntry,
)
from ttelgo.payments import RefundRef
from worker import build_workers
from workflows.refund import RefundProgress, RefundState, RefundWorkflow, refund_workflow_id


async def _refund(b2c: B2C, order_id: str, key: str | None = None, **body: Any) -> httpx.Response:
    response = await b2c.api.post(
        f"/api/v1/admin/orders/{order_id}/refund",
        json={"reason": "customer asked", **body},
        headers={**await b2c.admin(), "Idempotency-Key": key or str(uuid.uuid4())},
    )
    if response.status_code == 201:
        b2c.workflows.append(f"refund-{response.json()['id']}")
    return response


async def _settled(b2c: B2C, refund_id: str, *statuses: str) -> dict[str, Any]:
    return await b2c.wait_for(f"/api/v1/admin/refunds/{refund_id}", await b2c.admin(), *statuses)


async def _admin_order(b2c: B2C, order_id: str) -> dict[str, Any]:
    response = await b2c.api.get(f"/api/v1/admin/orders/{order_id}", headers=await b2c.admin())
    assert response.status_code == 200, response.text
    return response.json()


async def _bundle_states(b2c: B2C, iccid: str) -> list[str]:
    client = b2c.sim.client()
    try:
        return [u.state for u in await client.get_esim_bundles(iccid)]
    finally:
        await client.aclose()


async def _revoked(b2c: B2C, iccid: str) -> None:
    """Revocation follows the refund (money first), so it is waited for: at eSIM Go and in our records."""
    deadline = time.monotonic() + 20
    while True:
        async with b2c.sessions() as session:
            recorded = await session.scalar(select(Esim.status).where(Esim.iccid == iccid))
        states = await _bundle_states(b2c, iccid)
        if states == ["revoked"] and recorded is EsimStatus.REVOKED:
            return
        assert time.monotonic() < deadline, f"{iccid} still {states} / {recorded}"
        await asyncio.sleep(0.2)


def _revokes(b2c: B2C) -> int:
    return sum(n for route, n in b2c.sim.stats()["requests"].items() if route.startswith("DELETE"))


def _refund_event(event_type: str, refund: dict[str, Any], status: str, workflow_id: str) -> dict[str, Any]:
    return {
        "id": f"evt_{uuid.uuid4().hex[:20]}",
        "type": event_type,
        "created": int(time.time()),
        "data": {
            "object": {
                "id": refund["provider_refund_id"],
                "object": "refund",
                "amount": refund["amount_minor"],
                "currency": refund["currency"].lower(),
                "status": status,
                "metadata": {"workflow_id": workflow_id},
            }
        },
    }


async def test_full_card_refund_revokes_once_and_ignores_replayed_events(b2c: B2C) -> None:
    customer = await b2c.customer()
    order = await b2c.paid_order(customer, quantity=2)
    balance_before = b2c.sim.admin.get("/organisation/balance").json()["balance"]
    key = str(uuid.uuid4())
    response = await _refund(b2c, order["id"], key=key)
    assert response.status_code == 201, response.text
    refund = await _settled(b2c, response.json()["id"], "SUCCEEDED")
    assert refund["amount_minor"] == order["total_minor"] and refund["provider_refund_id"]
    # The same request again is the same refund, not a second one.
    again = await _refund(b2c, order["id"], key=key)
    assert again.status_code == 201 and again.json()["id"] == refund["id"]

    detail = await _admin_order(b2c, order["id"])
    assert detail["status"] == "REFUNDED" and detail["refunded_minor"] == order["total_minor"]
    assert detail["payments"][0]["status"] == "REFUNDED"
    assert detail["payments"][0]["refunded_minor"] == order["total_minor"]
    for esim in order["esims"]:
        await _revoked(b2c, esim["iccid"])
    assert _revokes(b2c) == 2
    assert b2c.sim.admin.get("/organisation/balance").json()["balance"] > balance_before

    # Stripe repeats itself, late and out of order: nothing moves.
    workflow_id = f"refund-{refund['id']}"
    updated = _refund_event("refund.updated", refund, "succeeded", workflow_id)
    pending = _refund_event("refund.updated", refund, "pending", workflow_id)
    for event in (updated, updated, pending, updated):
        assert (await b2c.deliver(event)).status_code == 200
    assert (await _settled(b2c, refund["id"], "SUCCEEDED"))["status"] == "SUCCEEDED"
    assert (await _admin_order(b2c, order["id"]))["refunded_minor"] == order["total_minor"]
    assert _revokes(b2c) == 2

    audit = await b2c.api.get(
        "/api/v1/admin/audit-logs", params={"target_id": order["id"]}, headers=await b2c.admin()
    )
    [entry] = audit.json()["items"]
    assert entry["action"] == "order.refund" and entry["reason"] == "customer asked"
    assert entry["before"]["status"] == "COMPLETED" and entry["after"]["refund_id"] == refund["id"]
    assert entry["request_id"]


async def test_partial_refunds_up_to_the_total_and_not_beyond(b2c: B2C) -> None:
    customer = await b2c.customer()
    order = await b2c.paid_order(customer)
    total = order["total_minor"]
    first = await _refund(b2c, order["id"], amount_minor=100)
    await _settled(b2c, first.json()["id"], "SUCCEEDED")
    detail = await _admin_order(b2c, order["id"])
    assert (
        detail["status"] == "PARTIALLY_REFUNDED" and detail["payments"][0]["status"] == "PARTIALLY_REFUNDED"
    )
    assert await _bundle_states(b2c, order["esims"][0]["iccid"]) != ["revoked"]  # still in use

    over = await _refund(b2c, order["id"], amount_minor=total)
    assert over.status_code == 409 and over.json()["code"] == "REFUND_EXCEEDS_CAPTURED"
    rest = await _refund(b2c, order["id"])  # everything left
    assert (await _settled(b2c, rest.json()["id"], "SUCCEEDED"))["amount_minor"] == total - 100
    detail = await _admin_order(b2c, order["id"])
    assert detail["status"] == "REFUNDED" and detail["refunded_minor"] == total
    await _revoked(b2c, order["esims"][0]["iccid"])
    nothing_left = await _refund(b2c, order["id"], amount_minor=1)
    assert nothing_left.status_code == 409


async def test_two_racing_refunds_cannot_exceed_the_captured_amount(b2c: B2C) -> None:
    customer = await b2c.customer()
    order = await b2c.paid_order(customer)
    share = order["total_minor"] * 6 // 10
    answers = await asyncio.gather(*(_refund(b2c, order["id"], amount_minor=share) for _ in range(2)))
    assert sorted(a.status_code for a in answers) == [201, 409]
    [won] = [a.json() for a in answers if a.status_code == 201]
    await _settled(b2c, won["id"], "SUCCEEDED")
    detail = await _admin_order(b2c, order["id"])
    assert detail["refunded_minor"] == share and len(detail["refunds"]) == 1
    assert detail["payments"][0]["refunded_minor"] == share


async def test_a_refund_that_fails_after_succeeding_is_reversed_once(b2c: B2C) -> None:
    customer = await b2c.customer()
    order = await b2c.paid_order(customer)
    response = await _refund(b2c, order["id"], amount_minor=200)
    refund = await _settled(b2c, response.json()["id"], "SUCCEEDED")
    failed = _refund_event("refund.failed", refund, "failed", f"refund-{refund['id']}")
    for _ in range(3):
        assert (await b2c.deliver(failed)).status_code == 200
    await _settled(b2c, refund["id"], "REVERSED")
    detail = await _admin_order(b2c, order["id"])
    assert detail["status"] == "COMPLETED" and detail["refunded_minor"] == 0
    assert detail["payments"][0]["status"] == "SUCCEEDED" and detail["payments"][0]["refunded_minor"] == 0


async def test_refusals_change_nothing(b2c: B2C) -> None:
    customer = await b2c.customer()
    unpaid = (await b2c.order(customer)).json()
    refused = await _refund(b2c, unpaid["id"])
    assert refused.status_code == 409 and refused.json()["code"] == "ORDER_INVALID_STATE"
    missing = await _refund(b2c, str(uuid.uuid4()))
    assert missing.status_code == 404 and missing.json()["code"] == "ORDER_NOT_FOUND"
    no_reason = await b2c.api.post(
        f"/api/v1/admin/orders/{unpaid['id']}/refund",
        json={},
        headers={**await b2c.admin(), "Idempotency-Key": str(uuid.uuid4())},
    )
    assert no_reason.status_code == 422
    no_key = await b2c.api.post(
        f"/api/v1/admin/orders/{unpaid['id']}/refund", json={"reason": "x" * 5}, headers=await b2c.admin()
    )
    assert no_key.status_code == 400
    as_customer = await b2c.api.post(
        f"/api/v1/admin/orders/{unpaid['id']}/refund",
        json={"reason": "mine"},
        headers={**customer.headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert as_customer.status_code == 403
    detail = await _admin_order(b2c, unpaid["id"])
    assert detail["refunds"] == [] and detail["refunded_minor"] == 0
    audit = await b2c.api.get("/api/v1/admin/audit-logs", headers=await b2c.admin())
    assert audit.json()["total"] == 0


async def _use(b2c: B2C, iccid: str) -> None:
    """Data is used at the simulator, whose signed callbacks reach our API and mark the eSIM used."""
    b2c.sim.admin.put(
        "/callback-url", json={"url": f"{b2c.api_base}/api/v1/webhooks/esimgo"}
    ).raise_for_status()
    usage = await asyncio.to_thread(b2c.sim.admin.post, f"/esims/{iccid}/usage", json={"bytes": 100_000_000})
    usage.raise_for_status()
    deadline = time.monotonic() + 20
    while True:
        async with b2c.sessions() as session:
            esim = await session.scalar(select(Esim).where(Esim.iccid == iccid))
        if esim is not None and esim.first_used_at is not None:
            return
        assert time.monotonic() < deadline, "usage never recorded"
        await asyncio.sleep(0.2)


async def test_a_used_esim_is_refunded_only_with_the_override(b2c: B2C) -> None:
    customer = await b2c.customer()
    order = await b2c.paid_order(customer)
    await _use(b2c, order["esims"][0]["iccid"])
    refused = await _refund(b2c, order["id"])
    assert refused.status_code == 409 and refused.json()["code"] == "ESIM_ALREADY_USED"
    allowed = await _refund(b2c, order["id"], allow_used_esim=True, reason="network outage")
    assert allowed.status_code == 201 and allowed.json()["used_esim_override"] is True
    await _settled(b2c, allowed.json()["id"], "SUCCEEDED")
    audit = await b2c.api.get(
        "/api/v1/admin/audit-logs",
        params={"action": "order.refund.used_esim_override"},
        headers=await b2c.admin(),
    )
    [entry] = audit.json()["items"]
    assert entry["target_id"] == order["id"] and entry["after"]["allow_used_esim"] is True


async def _wallet_order(b2c: B2C) -> tuple[B2B, VendorHandle, dict[str, Any]]:
    b2b = await b2c.wallet_world()
    vendor = await b2b.new_vendor(balance=10_000)
    response = await b2b.order(vendor)
    assert response.status_code == 201 and response.json()["status"] == "COMPLETED", response.text
    return b2b, vendor, response.json()


async def _refund_entries(b2c: B2C, vendor: VendorHandle) -> int:
    async with b2c.sessions() as session:
        return await session.scalar(
            select(func.count()).where(
                VendorLedgerEntry.vendor_id == uuid.UUID(vendor.id),
                VendorLedgerEntry.entry_type == LedgerEntryType.REFUND,
            )
        )


async def test_vendor_refund_of_an_unused_esim_credits_the_wallet_once(b2c: B2C) -> None:
    b2b, vendor, order = await _wallet_order(b2c)
    assert (await b2b.wallet(vendor))["balance_minor"] == 10_000 - order["total_minor"]
    key = str(uuid.uuid4())
    path = f"/api/v1/vendor/orders/{order['id']}/refund"
    answers = [
        await b2c.api.post(
            path, json={"reason": "not needed"}, headers={**vendor.headers, "Idempotency-Key": key}
        )
        for _ in range(2)
    ]
    assert [a.status_code for a in answers] == [201, 201] and answers[0].json() == answers[1].json()
    b2c.workflows.append(f"refund-{answers[0].json()['id']}")
    await _settled(b2c, answers[0].json()["id"], "SUCCEEDED")
    assert (await b2b.wallet(vendor))["balance_minor"] == 10_000
    assert await _refund_entries(b2c, vendor) == 1
    await _revoked(b2c, order["esims"][0]["iccid"])
    assert _revokes(b2c) == 1

    other = await b2b.new_vendor()
    foreign = await b2c.api.post(
        path, json={"reason": "not mine"}, headers={**other.headers, "Idempotency-Key": str(uuid.uuid4())}
    )
    assert foreign.status_code == 404
    twice = await b2c.api.post(
        path, json={"reason": "again"}, headers={**vendor.headers, "Idempotency-Key": str(uuid.uuid4())}
    )
    assert twice.status_code == 409 and twice.json()["code"] == "ORDER_INVALID_STATE"
    assert (await b2b.wallet(vendor))["balance_minor"] == 10_000


async def test_retry_of_a_failed_wallet_order_provisions_once_and_charges_once(b2c: B2C) -> None:
    b2b = await b2c.wallet_world()
    vendor = await b2b.new_vendor(balance=10_000)
    b2c.sim.faults(**{"POST /orders": {"no_bundles_left": True}})
    failed = (await b2b.order(vendor)).json()
    assert failed["status"] == "FAILED" and (await b2b.wallet(vendor))["balance_minor"] == 10_000
    b2c.sim.admin.delete("/faults").raise_for_status()

    admin = await b2c.admin()
    retry = await b2c.api.post(
        f"/api/v1/admin/orders/{failed['id']}/retry", json={"reason": "supplier restocked"}, headers=admin
    )
    assert retry.status_code == 202, retry.text
    again = await b2c.api.post(
        f"/api/v1/admin/orders/{failed['id']}/retry", json={"reason": "double click"}, headers=admin
    )
    assert again.status_code == 409
    done = await b2c.wait_for(f"/api/v1/vendor/orders/{failed['id']}", vendor.headers, "COMPLETED")
    assert len(done["esims"]) == 1 and done["failure_code"] is None
    assert b2c.sim.stats()["orders"]["transactions"] == 1
    assert (await b2b.wallet(vendor))["balance_minor"] == 10_000 - failed["total_minor"]
    async with b2c.sessions() as session:
        debits = await session.scalar(
            select(func.count()).where(
                VendorLedgerEntry.vendor_id == uuid.UUID(vendor.id),
                VendorLedgerEntry.entry_type == LedgerEntryType.ORDER_DEBIT,
            )
        )
    assert debits == 1

    detail = await _admin_order(b2c, failed["id"])
    statuses = [e["detail"]["status"] for e in detail["timeline"] if e["event"] == "status"]
    assert statuses[:2] == ["PROVISIONING", "FAILED"] and statuses[-1] == "COMPLETED"
    assert any(e["event"] == "step failed" for e in detail["timeline"])
    assert [e["event"] for e in detail["timeline"] if e["source"] == "audit"] == ["order.retry"]


async def test_admin_cancels_an_unpaid_order_and_lists_orders(b2c: B2C) -> None:
    customer = await b2c.customer()
    unpaid = (await b2c.order(customer)).json()
    paid = await b2c.paid_order(customer)
    admin = await b2c.admin()
    canceled = await b2c.api.post(
        f"/api/v1/admin/orders/{unpaid['id']}/cancel", json={"reason": "fraud check"}, headers=admin
    )
    assert canceled.status_code == 200 and canceled.json()["status"] == "CANCELED"
    refused = await b2c.api.post(
        f"/api/v1/admin/orders/{paid['id']}/cancel", json={"reason": "too late"}, headers=admin
    )
    assert refused.status_code == 409
    assert (await b2c.stripe.retrieve_intent(unpaid["payment"]["payment_intent_id"])).status == "canceled"

    listed = await b2c.api.get(
        "/api/v1/admin/orders", params={"customer_email": customer.email.upper()}, headers=admin
    )
    assert {o["id"] for o in listed.json()["items"]} == {unpaid["id"], paid["id"]}
    only = await b2c.api.get(
        "/api/v1/admin/orders", params={"status": "CANCELED", "channel": "B2C"}, headers=admin
    )
    assert [o["id"] for o in only.json()["items"]] == [unpaid["id"]]
    nothing = await b2c.api.get("/api/v1/admin/orders", params={"channel": "B2B"}, headers=admin)
    assert nothing.json()["total"] == 0

    detail = await _admin_order(b2c, paid["id"])
    assert detail["customer_email"] == customer.email
    qr = await b2c.api.get(detail["esims"][0]["qr_code_url"], headers=admin)
    assert qr.status_code == 200 and qr.content.startswith(b"\x89PNG")
    statuses = [e["detail"]["status"] for e in detail["timeline"] if e["event"] == "status"]
    assert statuses == ["PAYMENT_PENDING", "PAID", "PROVISIONING", "COMPLETED"]
    steps = {e["detail"].get("step") for e in detail["timeline"] if e["event"] == "step scheduled"}
    assert "payments.open" in steps
    # Its supplier step ran in the supplier batcher, whose answer names the supplier order and line.
    [bought] = [e["detail"] for e in detail["timeline"] if e["detail"].get("name") == "supplier_purchase"]
    assert bought["supplier_order"] and bought["line"] == 0
    assert any(e["event"] == "signal" and e["detail"]["name"] == "payment_event" for e in detail["timeline"])
    audit = await b2c.api.get("/api/v1/admin/audit-logs", params={"action": "order.cancel"}, headers=admin)
    [entry] = audit.json()["items"]
    assert entry["before"]["status"] == "PAYMENT_PENDING" and entry["after"]["status"] == "CANCELED"
    async with b2c.sessions() as session:
        payment = await session.scalar(select(Payment).where(Payment.order_id == uuid.UUID(unpaid["id"])))
        assert payment is not None and payment.status is PaymentStatus.CANCELED


async def test_a_pending_card_refund_is_read_back_until_it_is_final(b2c: B2C) -> None:
    """localstripe settles refunds at once, so here Stripe's two refund calls answer "pending" first,
    as a bank transfer would; everything else (database, eSIM Go, Temporal) is the real thing."""
    customer = await b2c.customer()
    order = await b2c.paid_order(customer)
    reads: list[str] = []

    @activity.defn(name=CREATE_CARD_REFUND)
    async def create_refund(request: CardRefund) -> RefundRef:
        return RefundRef(id="re_slow_bank", status="pending", amount_minor=request.amount_minor)

    @activity.defn(name=READ_CARD_REFUND)
    async def read_refund(refund_id: str) -> RefundRef:
        reads.append(refund_id)
        return RefundRef(id=refund_id, status="succeeded" if len(reads) == 2 else "pending", amount_minor=1)

    queue = f"{b2c.settings.temporal_task_queue}-slow-bank"
    settings = b2c.settings.model_copy(
        update={"temporal_task_queue": queue, "esimgo_task_queue": f"{queue}-esimgo"}
    )
    activities = await build_activities(settings)
    stubbed = {CREATE_CARD_REFUND, READ_CARD_REFUND}
    activities.main = [
        a for a in activities.main if activity._Definition.must_from_callable(a).name not in stubbed
    ] + [create_refund, read_refund]
    refund_id = uuid.uuid4()
    try:
        async with contextlib.AsyncExitStack() as stack:
            for worker in build_workers(b2c.temporal, settings, activities):
                await stack.enter_async_context(worker)
            result = await b2c.temporal.execute_workflow(
                RefundWorkflow.run,
                RefundInput(
                    refund_id=refund_id,
                    workflow_id=refund_workflow_id(refund_id),
                    order_id=uuid.UUID(order["id"]),
                    reason="slow bank",
                    actor="admin:test",
                    supplier_task_queue=settings.esimgo_task_queue,
                    poll_s=1,
                    watch_s=0,
                ),
                id=refund_workflow_id(refund_id),
                task_queue=queue,
                result_type=RefundProgress,
            )
    finally:
        await activities.close()
    assert result.state is RefundState.SUCCEEDED and reads == ["re_slow_bank", "re_slow_bank"]
    refund = await _settled(b2c, str(refund_id), "SUCCEEDED")
    assert refund["provider_refund_id"] == "re_slow_bank"
    assert (await _admin_order(b2c, order["id"]))["status"] == "REFUNDED"


async def _as_if_the_automatic_refund_failed(b2c: B2C, order_id: str, code: str) -> None:
    """The state the order workflow leaves when provisioning failed after payment and Stripe then refused
    the compensation refund (localstripe never refuses one, so the state is written here)."""
    async with b2c.sessions() as session, session.begin():
        await session.execute(delete(Esim).where(Esim.order_id == uuid.UUID(order_id)))
        await session.execute(
            update(Order)
            .where(Order.id == uuid.UUID(order_id))
            .values(status=OrderStatus.FAILED, failure_code=code, failure_reason="Stripe said no")
        )


async def test_a_card_order_whose_automatic_refund_failed_is_refunded_by_an_admin(b2c: B2C) -> None:
    customer = await b2c.customer()
    order = await b2c.paid_order(customer)
    await _as_if_the_automatic_refund_failed(b2c, order["id"], "REFUND_FAILED")

    response = await _refund(b2c, order["id"])

    assert response.status_code == 201, response.text
    assert response.json()["amount_minor"] == order["total_minor"]
    settled = await _settled(b2c, response.json()["id"], "SUCCEEDED", "FAILED")
    assert settled["status"] == "SUCCEEDED"
    detail = await _admin_order(b2c, order["id"])
    assert detail["status"] == "REFUNDED" and detail["refunded_minor"] == order["total_minor"]
    assert [p["status"] for p in detail["payments"]] == ["REFUNDED"]


async def test_a_failed_wallet_order_is_not_refundable_its_hold_was_released(b2c: B2C) -> None:
    b2b = await b2c.wallet_world()
    vendor = await b2b.new_vendor(balance=10_000)
    b2c.sim.faults(**{"POST /orders": {"no_bundles_left": True}})
    failed = await b2b.order(vendor)
    assert failed.json()["status"] == "FAILED", failed.text

    response = await _refund(b2c, failed.json()["id"])

    assert response.status_code == 409 and response.json()["code"] == "ORDER_INVALID_STATE"
    assert (await b2b.wallet(vendor))["balance_minor"] == 10_000
