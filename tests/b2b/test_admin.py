"""Admin vendor operations: onboarding rules, listing, balance adjustments and markup."""

from __future__ import annotations

import uuid

from tests.b2b.conftest import B2B, BUNDLE


async def test_adjustments_credit_debit_and_never_break_the_floor(b2b: B2B) -> None:
    vendor = await b2b.new_vendor(balance=1_000)
    debit = await b2b.api.post(
        f"/api/v1/admin/vendors/{vendor.id}/adjust-balance",
        json={"amount_minor": -400, "reason": "goodwill reversal"},
        headers={**b2b.admin, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert debit.status_code == 200 and debit.json()["wallet"]["balance_minor"] == 600
    too_much = await b2b.api.post(
        f"/api/v1/admin/vendors/{vendor.id}/adjust-balance",
        json={"amount_minor": -601, "reason": "would overdraw"},
        headers={**b2b.admin, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert too_much.status_code == 402 and too_much.json()["code"] == "INSUFFICIENT_FUNDS"
    zero = await b2b.api.post(
        f"/api/v1/admin/vendors/{vendor.id}/adjust-balance",
        json={"amount_minor": 0, "reason": "nothing"},
        headers={**b2b.admin, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert zero.status_code == 422
    assert (await b2b.wallet(vendor))["balance_minor"] == 600


async def test_onboarding_rules_and_listing(b2b: B2B) -> None:
    half_owner = await b2b.api.post(
        "/api/v1/admin/vendors",
        headers={**b2b.admin, "Idempotency-Key": "h1"},
        json={"name": "X", "contact_email": "x@example.com", "owner_email": "o@example.com"},
    )
    assert half_owner.status_code == 422
    euro = await b2b.api.post(
        "/api/v1/admin/vendors",
        headers={**b2b.admin, "Idempotency-Key": "h2"},
        json={"name": "X", "contact_email": "x@example.com", "currency": "EUR"},
    )
    assert euro.status_code == 422
    first = await b2b.new_vendor()
    duplicate_email = (await b2b.api.get(f"/api/v1/admin/vendors/{first.id}", headers=b2b.admin)).json()[
        "contact_email"
    ]
    again = await b2b.api.post(
        "/api/v1/admin/vendors",
        headers={**b2b.admin, "Idempotency-Key": "h3"},
        json={"name": "Y", "contact_email": duplicate_email.upper()},
    )
    assert again.status_code == 409 and again.json()["code"] == "VENDOR_ALREADY_EXISTS"
    await b2b.new_vendor(approve=False)
    pending = (
        await b2b.api.get("/api/v1/admin/vendors", params={"status": "PENDING"}, headers=b2b.admin)
    ).json()
    assert pending["total"] == 1 and pending["items"][0]["status"] == "PENDING"
    page = (await b2b.api.get("/api/v1/admin/vendors", params={"page_size": 1}, headers=b2b.admin)).json()
    assert page["total"] == 2 and len(page["items"]) == 1


async def test_markup_changes_the_vendor_price(b2b: B2B) -> None:
    vendor = await b2b.new_vendor(balance=100_000, markup_bps=0)
    cheap = (await b2b.order(vendor)).json()["unit_price_minor"]
    changed = await b2b.api.patch(
        f"/api/v1/admin/vendors/{vendor.id}/markup", json={"markup_bps": 5000}, headers=b2b.admin
    )
    assert changed.status_code == 200 and changed.json()["markup_bps"] == 5000
    dearer = (await b2b.order(vendor, bundle=BUNDLE)).json()["unit_price_minor"]
    assert dearer == -(-cheap * 15_000 // 10_000)
