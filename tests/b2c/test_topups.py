"""Vendor wallet top-ups by card: credited exactly once, whatever Stripe redelivers."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import func, select

from tests.b2b.conftest import B2B, VendorHandle
from tests.b2c.conftest import B2C, intent_event
from ttelgo.models import LedgerEntryType, Payment, VendorLedgerEntry


async def _vendor(b2c: B2C) -> tuple[B2B, VendorHandle]:
    b2b = await b2c.wallet_world()
    return b2b, await b2b.new_vendor()


async def _topup(b2c: B2C, vendor: VendorHandle, amount: int = 5_000, currency: str = "USD") -> dict:
    response = await b2c.api.post(
        "/api/v1/vendor/wallet/topup/intents",
        json={"amount_minor": amount, "currency": currency},
        headers={**vendor.headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert response.status_code == 201, response.text
    topup = response.json()
    b2c.workflows.append(f"topup-{topup['id']}")
    return topup


async def _topup_entries(b2c: B2C, vendor: VendorHandle) -> int:
    async with b2c.sessions() as session:
        return await session.scalar(
            select(func.count()).where(
                VendorLedgerEntry.vendor_id == uuid.UUID(vendor.id),
                VendorLedgerEntry.entry_type == LedgerEntryType.TOPUP,
            )
        )


async def test_card_topup_credits_the_wallet_once_despite_redeliveries(b2c: B2C) -> None:
    b2b, vendor = await _vendor(b2c)
    topup = await _topup(b2c, vendor)
    assert topup["state"] == "PAYMENT_PENDING" and topup["payment"]["amount_minor"] == 5_000
    intent_id = topup["payment"]["payment_intent_id"]
    assert (await b2c.pay(intent_id)).status == "succeeded"
    path = f"/api/v1/vendor/wallet/topups/{topup['id']}"
    done = await b2c.wait_for(path, vendor.headers, "COMPLETED", field="state")
    assert done["payment_status"] == "SUCCEEDED" and done["payment"] is None

    # Stripe sends it again (same event and fresh ids), after completion: nothing more happens.
    intent = await b2c.stripe.retrieve_intent(intent_id)
    late = intent_event("payment_intent.succeeded", intent, {"workflow_id": f"topup-{topup['id']}"})
    for event in (late, late, intent_event("payment_intent.succeeded", intent, {})):
        assert (await b2c.deliver(event)).status_code == 200
    wallet = await b2b.wallet(vendor)
    assert wallet["balance_minor"] == 5_000 and wallet["available_minor"] == 5_000
    assert await _topup_entries(b2c, vendor) == 1
    listed = (await b2c.api.get("/api/v1/vendor/wallet/topups", headers=vendor.headers)).json()
    assert [t["id"] for t in listed["items"]] == [topup["id"]]


async def test_concurrent_duplicate_webhooks_credit_once(b2c: B2C) -> None:
    b2b, vendor = await _vendor(b2c)
    topup = await _topup(b2c, vendor, amount=12_345)
    intent = await b2c.stripe.retrieve_intent(topup["payment"]["payment_intent_id"])
    metadata = {"workflow_id": f"topup-{topup['id']}"}
    first, second = (intent_event("payment_intent.succeeded", intent, metadata) for _ in range(2))
    answers = await asyncio.gather(*(b2c.deliver(e) for e in [first] * 5 + [second] * 3))
    assert all(a.status_code == 200 for a in answers)
    await b2c.wait_for(
        f"/api/v1/vendor/wallet/topups/{topup['id']}", vendor.headers, "COMPLETED", field="state"
    )
    assert (await b2b.wallet(vendor))["balance_minor"] == 12_345
    assert await _topup_entries(b2c, vendor) == 1


@pytest.mark.parametrize("b2c", [{"window_minutes": 0.05}], indirect=True)
async def test_unpaid_topup_expires_without_credit(b2c: B2C) -> None:
    b2b, vendor = await _vendor(b2c)
    topup = await _topup(b2c, vendor)
    path = f"/api/v1/vendor/wallet/topups/{topup['id']}"
    expired = await b2c.wait_for(path, vendor.headers, "EXPIRED", field="state", within_s=20)
    assert expired["payment_status"] == "CANCELED"
    assert (await b2c.stripe.retrieve_intent(topup["payment"]["payment_intent_id"])).status == "canceled"
    assert (await b2b.wallet(vendor))["balance_minor"] == 0


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"amount_minor": 999, "currency": "USD"}, "TOPUP_AMOUNT_OUT_OF_RANGE"),
        ({"amount_minor": 1_000_001, "currency": "USD"}, "TOPUP_AMOUNT_OUT_OF_RANGE"),
        ({"amount_minor": 5_000, "currency": "EUR"}, "VALIDATION_ERROR"),
        ({"amount_minor": 5_000, "currency": "usd"}, "VALIDATION_ERROR"),
        ({"amount_minor": -5, "currency": "USD"}, "VALIDATION_ERROR"),
    ],
)
async def test_bad_topups_are_422_and_change_nothing(b2c: B2C, body: dict, code: str) -> None:
    _, vendor = await _vendor(b2c)
    response = await b2c.api.post(
        "/api/v1/vendor/wallet/topup/intents",
        json=body,
        headers={**vendor.headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert response.status_code == 422 and response.json()["code"] == code, response.text
    async with b2c.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Payment)) == 0
