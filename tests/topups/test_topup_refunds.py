"""Refunding a completed top-up gives its bundle back to eSIM Go (and its cost to our supplier balance),
leaves the eSIM and the bundle it was sold with alone, and follows the used-eSIM rule for its own bundle."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from sqlalchemy import func, select, update

from activities.esimgo import SupplierActivities
from activities.ledger import SUPPLIER_CREDIT_CODE
from tests.b2c.conftest import B2C
from tests.topups.test_customer_topups import FITS, _esim, _topup
from ttelgo.models import (
    Esim,
    EsimBundle,
    EsimStatus,
    LedgerEntryType,
    Payment,
    Refund,
    Transfer,
    VendorLedgerEntry,
)

SOLD_WITH = "esim_1GB_7D_FR_V2"


def _revokes(b2c: B2C) -> int:
    return sum(n for route, n in b2c.sim.stats()["requests"].items() if route.startswith("DELETE"))


async def _states(b2c: B2C, iccid: str) -> dict[str, str]:
    client = b2c.sim.client()
    try:
        return {u.name: u.state for u in await client.get_esim_bundles(iccid)}
    finally:
        await client.aclose()


async def _topup_revoked(b2c: B2C, iccid: str, order_id: str) -> None:
    """Revocation follows the money, and its supplier credit follows the revocation: both are waited for."""
    deadline = time.monotonic() + 20
    while True:
        async with b2c.sessions() as session:
            credits = await session.scalar(
                select(func.count()).where(
                    Transfer.order_id == uuid.UUID(order_id), Transfer.code == SUPPLIER_CREDIT_CODE
                )
            )
        if (await _states(b2c, iccid)).get(FITS) == "revoked" and credits:
            return
        assert time.monotonic() < deadline, f"{iccid}: {await _states(b2c, iccid)}, {credits} credit(s)"
        await asyncio.sleep(0.2)


async def _check_revoked_once(b2c: B2C, iccid: str, order_id: str) -> None:
    await _topup_revoked(b2c, iccid, order_id)
    states = await _states(b2c, iccid)
    assert states[SOLD_WITH] not in ("revoked", "expired") and _revokes(b2c) == 1
    async with b2c.sessions() as session:
        assert await session.scalar(select(Esim.status).where(Esim.iccid == iccid)) is not EsimStatus.REVOKED
        credits = list(
            await session.scalars(
                select(Transfer).where(
                    Transfer.order_id == uuid.UUID(order_id), Transfer.code == SUPPLIER_CREDIT_CODE
                )
            )
        )
        cost = await session.get_one(Transfer, f"order-{order_id}:supplier-cost")
    assert [c.amount_minor for c in credits] == [cost.amount_minor]
    # A retry of the step (after a crash that lost its answer) finds nothing more of ours to give back.
    client = b2c.sim.client()
    try:
        again = await SupplierActivities(client, b2c.sessions).release_order(uuid.UUID(order_id))
    finally:
        await client.aclose()
    assert again == 0 and _revokes(b2c) == 1 and await _states(b2c, iccid) == states


async def _paid_topup(b2c: B2C) -> tuple[Any, str, dict[str, Any]]:
    customer = await b2c.customer()
    iccid = await _esim(b2c, customer)
    topup = (await _topup(b2c, customer, iccid)).json()
    await b2c.pay(topup["payment"]["payment_intent_id"])
    await b2c.wait_for(f"/api/v1/orders/{topup['id']}", customer.headers, "COMPLETED")
    return customer, iccid, topup


async def _admin_refund(b2c: B2C, order_id: str, **body: Any) -> Any:
    response = await b2c.api.post(
        f"/api/v1/admin/orders/{order_id}/refund",
        json={"reason": "customer asked", **body},
        headers={**await b2c.admin(), "Idempotency-Key": str(uuid.uuid4())},
    )
    if response.status_code == 201:
        b2c.workflows.append(f"refund-{response.json()['id']}")
    return response


async def test_a_refunded_card_topup_revokes_its_bundle_once(b2c: B2C) -> None:
    customer, iccid, topup = await _paid_topup(b2c)
    response = await _admin_refund(b2c, topup["id"])
    assert response.status_code == 201, response.text
    await b2c.wait_for(f"/api/v1/admin/refunds/{response.json()['id']}", await b2c.admin(), "SUCCEEDED")
    await _check_revoked_once(b2c, iccid, topup["id"])
    await b2c.wait_for(f"/api/v1/orders/{topup['id']}", customer.headers, "REFUNDED")
    async with b2c.sessions() as session:
        payment = await session.scalar(select(Payment).where(Payment.order_id == uuid.UUID(topup["id"])))
        refunds = await session.scalar(select(func.count()).where(Refund.order_id == uuid.UUID(topup["id"])))
    assert payment is not None and payment.refunded_minor == topup["total_minor"] and refunds == 1
    assert await b2c.invariants() == []


async def test_a_used_topup_bundle_is_refunded_only_with_the_override(b2c: B2C) -> None:
    _, iccid, topup = await _paid_topup(b2c)
    # A usage callback started the top-up's own bundle (the sold bundle is untouched, so the eSIM's own
    # columns say nothing of it).
    async with b2c.sessions() as session, session.begin():
        await session.execute(
            update(EsimBundle)
            .where(EsimBundle.order_id == uuid.UUID(topup["id"]))
            .values(state="active", started_at=func.now())
        )
    refused = await _admin_refund(b2c, topup["id"])
    assert refused.status_code == 409 and refused.json()["code"] == "ESIM_ALREADY_USED"
    assert _revokes(b2c) == 0
    allowed = await _admin_refund(b2c, topup["id"], allow_used_esim=True, reason="network outage")
    assert allowed.status_code == 201 and allowed.json()["used_esim_override"] is True
    await b2c.wait_for(f"/api/v1/admin/refunds/{allowed.json()['id']}", await b2c.admin(), "SUCCEEDED")
    await _topup_revoked(b2c, iccid, topup["id"])


async def test_a_refunded_wallet_topup_credits_the_wallet_once_and_revokes_its_bundle(b2c: B2C) -> None:
    b2b = await b2c.wallet_world()
    vendor = await b2b.new_vendor(balance=100_000)
    sold = await b2b.order(vendor, wait=30)
    iccid = sold.json()["esims"][0]["iccid"]
    bought = await b2c.api.post(
        f"/api/v1/vendor/esims/{iccid}/topups",
        params={"wait": 30},
        json={"bundle_code": FITS},
        headers={**vendor.headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    topup = bought.json()
    assert topup["status"] == "COMPLETED", bought.text
    before = (await b2b.wallet(vendor))["balance_minor"]

    refunded = await b2c.api.post(
        f"/api/v1/vendor/orders/{topup['id']}/refund",
        json={"reason": "not needed"},
        headers={**vendor.headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert refunded.status_code == 201, refunded.text
    b2c.workflows.append(f"refund-{refunded.json()['id']}")
    await b2c.wait_for(f"/api/v1/admin/refunds/{refunded.json()['id']}", await b2c.admin(), "SUCCEEDED")
    await _check_revoked_once(b2c, iccid, topup["id"])
    assert (await b2b.wallet(vendor))["balance_minor"] == before + topup["total_minor"]
    async with b2c.sessions() as session:
        entries = await session.scalar(
            select(func.count()).where(
                VendorLedgerEntry.order_id == uuid.UUID(topup["id"]),
                VendorLedgerEntry.entry_type == LedgerEntryType.REFUND,
            )
        )
    assert entries == 1
    assert await b2c.invariants() == []
