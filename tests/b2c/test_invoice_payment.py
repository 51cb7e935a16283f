"""Paying settles POSTPAID invoices: a card top-up or an admin credit marks PAID, oldest first, each invoice
the vendor's payments now cover; a partial payment settles nothing; the overdue block lifts once paid."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from activities.contracts import TopupInput
from activities.ledger import LedgerActivities
from tests.b2b.conftest import B2B, VendorHandle
from tests.b2c.conftest import B2C
from ttelgo import invoicing
from ttelgo.models import AuditLog, Invoice, InvoiceStatus, VendorLedgerEntry

PERIOD = invoicing.month_before(datetime.now(UTC))


async def _overdue_invoice(b2b: B2B, vendor: VendorHandle, quantity: int = 1) -> dict[str, Any]:
    """A completed order, booked last month, invoiced and left past its due date and grace."""
    order = await b2b.order(vendor, quantity=quantity)
    assert order.status_code == 201 and order.json()["status"] == "COMPLETED", order.text
    start, _ = invoicing.period_bounds(PERIOD)
    async with b2b.sessions() as session, session.begin():
        await session.execute(
            update(VendorLedgerEntry)
            .where(VendorLedgerEntry.vendor_id == uuid.UUID(vendor.id))
            .values(created_at=start + timedelta(days=1))
        )
    issued = await b2b.api.post(
        "/api/v1/admin/invoices/run",
        json={"vendor_id": vendor.id, "period": PERIOD},
        headers={**b2b.admin, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert issued.status_code == 200, issued.text
    invoice = issued.json()
    assert invoice["status"] == "ISSUED" and invoice["total_minor"] > 0
    past_grace = datetime.now(UTC) - timedelta(days=b2b.settings.invoice_grace_days + 1)
    async with b2b.sessions() as session, session.begin():
        await session.execute(
            update(Invoice).where(Invoice.id == uuid.UUID(invoice["id"])).values(due_at=past_grace)
        )
    blocked = await b2b.order(vendor)
    assert blocked.status_code == 402 and blocked.json()["code"] == "INVOICE_OVERDUE", blocked.text
    return invoice


async def _paid_topup(b2c: B2C, vendor: VendorHandle, amount: int) -> dict[str, Any]:
    """A card top-up paid through localstripe (the webhook reaches the workflow), COMPLETED."""
    response = await b2c.api.post(
        "/api/v1/vendor/wallet/topup/intents",
        json={"amount_minor": amount, "currency": "USD"},
        headers={**vendor.headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert response.status_code == 201, response.text
    topup = response.json()
    b2c.workflows.append(f"topup-{topup['id']}")
    assert (await b2c.pay(topup["payment"]["payment_intent_id"])).status == "succeeded"
    path = f"/api/v1/vendor/wallet/topups/{topup['id']}"
    return await b2c.wait_for(path, vendor.headers, "COMPLETED", field="state")


async def _status(b2b: B2B, invoice_id: str) -> InvoiceStatus:
    async with b2b.sessions() as session:
        invoice = await session.get_one(Invoice, uuid.UUID(invoice_id))
        return invoice.status


async def _settlements(b2b: B2B, invoice_id: str) -> list[AuditLog]:
    async with b2b.sessions() as session:
        rows = await session.scalars(
            select(AuditLog).where(AuditLog.action == "invoice.settle", AuditLog.target_id == invoice_id)
        )
        return list(rows)


async def test_a_card_topup_that_covers_an_overdue_invoice_settles_it_and_ordering_resumes(b2c: B2C) -> None:
    b2b = await b2c.wallet_world()
    vendor = await b2b.new_vendor(billing_mode="POSTPAID", credit_limit=100_000)
    invoice = await _overdue_invoice(b2b, vendor, quantity=10)
    rest = b2c.settings.topup_min_minor  # the smallest card top-up there is
    total = invoice["total_minor"]
    assert total >= 2 * rest

    await _paid_topup(b2c, vendor, total - rest)  # short of the total: settles nothing, still blocked
    assert await _status(b2b, invoice["id"]) is InvoiceStatus.ISSUED
    assert (await b2b.order(vendor)).json()["code"] == "INVOICE_OVERDUE"

    topup = await _paid_topup(b2c, vendor, rest)  # the rest: the two payments together cover it
    assert await _status(b2b, invoice["id"]) is InvoiceStatus.PAID
    (settled,) = await _settlements(b2b, invoice["id"])
    assert settled.actor_type == "system" and settled.after is not None
    assert settled.after["paid_by"] == f"topup-{topup['id']}:credit"
    accepted = await b2b.order(vendor)
    assert accepted.status_code == 201 and accepted.json()["status"] == "COMPLETED", accepted.text

    # The credit activity run again (a retried local activity) credits nothing and settles nothing more.
    wallet_before = await b2b.wallet(vendor)
    again = TopupInput(
        topup_id=uuid.UUID(topup["id"]),
        workflow_id=f"topup-{topup['id']}",
        vendor_id=uuid.UUID(vendor.id),
        amount_minor=rest,
        currency="USD",
        payment_window_s=60,
    )
    await LedgerActivities(b2b.sessions).credit_topup(again)
    assert await b2b.wallet(vendor) == wallet_before
    assert len(await _settlements(b2b, invoice["id"])) == 1
    assert await b2b.invariants() == []


async def test_an_admin_credit_settles_the_invoices_it_covers_oldest_first(b2c: B2C) -> None:
    b2b = await b2c.wallet_world()
    vendor = await b2b.new_vendor(billing_mode="POSTPAID", credit_limit=100_000)
    invoice = await _overdue_invoice(b2b, vendor)
    debit = await b2b.api.post(
        f"/api/v1/admin/vendors/{vendor.id}/adjust-balance",
        json={"amount_minor": -1, "reason": "fee"},
        headers={**b2b.admin, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert debit.status_code == 200, debit.text
    await b2b.adjust(vendor.id, invoice["total_minor"])  # the fee is owed too: still a cent short
    assert await _status(b2b, invoice["id"]) is InvoiceStatus.ISSUED
    await b2b.adjust(vendor.id, 1)
    assert await _status(b2b, invoice["id"]) is InvoiceStatus.PAID
    (settled,) = await _settlements(b2b, invoice["id"])
    assert settled.actor_type == "admin" and settled.after and settled.after["paid_by"].startswith("adjust:")
    assert (await b2b.order(vendor)).status_code == 201
