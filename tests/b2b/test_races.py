"""Many concurrent orders against one wallet: exactly what it affords completes, never below its floor."""

from __future__ import annotations

import asyncio

import pytest

from tests.b2b.conftest import B2B

CONCURRENT, AFFORDABLE = 50, 20


@pytest.mark.parametrize("billing_mode", ["PREPAID", "POSTPAID"])
async def test_concurrent_orders_stop_exactly_at_the_floor(b2b: B2B, billing_mode: str) -> None:
    unit = await b2b.wholesale()  # markup 0: the vendor pays wholesale
    if billing_mode == "PREPAID":
        vendor = await b2b.new_vendor(balance=AFFORDABLE * unit)
    else:
        vendor = await b2b.new_vendor(billing_mode="POSTPAID", credit_limit=AFFORDABLE * unit)
    responses = await asyncio.gather(*(b2b.order(vendor, wait=30) for _ in range(CONCURRENT)))
    statuses = sorted(r.status_code for r in responses)
    refused_code = "INSUFFICIENT_FUNDS" if billing_mode == "PREPAID" else "CREDIT_LIMIT_EXCEEDED"
    assert statuses.count(201) == AFFORDABLE and statuses.count(402) == CONCURRENT - AFFORDABLE, statuses
    assert {r.json()["code"] for r in responses if r.status_code == 402} == {refused_code}
    assert all(r.json()["status"] == "COMPLETED" for r in responses if r.status_code == 201)

    wallet = await b2b.wallet(vendor)
    floor = 0 if billing_mode == "PREPAID" else -AFFORDABLE * unit
    assert wallet["available_minor"] == wallet["balance_minor"] == floor and wallet["held_minor"] == 0
    bought = b2b.sim.stats()["orders"]  # waiting orders are bought together, a line each
    assert bought["lines"] == bought["bundles_ordered"] == AFFORDABLE
    statement = (
        await b2b.api.get("/api/v1/vendor/ledger", params={"page_size": 100}, headers=vendor.headers)
    ).json()
    assert min(e["available_after_minor"] for e in statement["items"]) >= floor
