"""POSTPAID invoices: a month of orders invoiced once per vendor, totals equal to the ledger, numbers
without gaps, exactly once whatever is retried, and an overdue invoice suspending orders until settled."""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from tests.b2b.conftest import B2B, VendorHandle
from ttelgo import invoicing
from ttelgo.models import AuditLog, Invoice, LedgerEntryType, Notification, VendorLedgerEntry
from workflows.invoicing import InvoicingInput, InvoicingResult, InvoicingWorkflow

PERIOD = invoicing.month_before(datetime.now(UTC))  # a month is invoiced once it has ended


async def _into_period(b2b: B2B) -> None:
    """The orders below are booked now: their ledger entries are moved into last month, as if made then."""
    start, _ = invoicing.period_bounds(PERIOD)
    async with b2b.sessions() as session, session.begin():
        await session.execute(update(VendorLedgerEntry).values(created_at=start + timedelta(days=1)))


async def _completed_order(b2b: B2B, vendor: VendorHandle, quantity: int = 1) -> str:
    response = await b2b.order(vendor, quantity=quantity)
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "COMPLETED"
    return response.json()["id"]


async def _billed(b2b: B2B, vendor_id: str) -> int:
    """What the ledger says the vendor owes for the month: posted order debits minus refunds."""
    async with b2b.sessions() as session:
        amounts = await session.scalars(
            select(VendorLedgerEntry.amount_minor).where(
                VendorLedgerEntry.vendor_id == uuid.UUID(vendor_id),
                VendorLedgerEntry.entry_type.in_((LedgerEntryType.ORDER_DEBIT, LedgerEntryType.REFUND)),
            )
        )
        return -sum(amounts)


async def _run(b2b: B2B, workflow_id: str | None = None) -> InvoicingResult:
    return await b2b.temporal.execute_workflow(
        InvoicingWorkflow.run,
        InvoicingInput(period=PERIOD),
        id=workflow_id or f"invoicing-test-{uuid.uuid4().hex[:8]}",
        task_queue=b2b.settings.temporal_task_queue,
        result_type=InvoicingResult,
    )


async def _numbers(b2b: B2B) -> list[str]:
    async with b2b.sessions() as session:
        return sorted((await session.scalars(select(Invoice.number))).all())


def _without_gaps(numbers: list[str]) -> bool:
    year = datetime.now(UTC).year
    return numbers == [f"INV-{year}-{n:06d}" for n in range(1, len(numbers) + 1)]


async def test_a_month_of_postpaid_orders_is_invoiced_once_per_vendor_as_the_ledger_says(b2b: B2B) -> None:
    first = await b2b.new_vendor(billing_mode="POSTPAID", credit_limit=100_000)
    second = await b2b.new_vendor(billing_mode="POSTPAID", credit_limit=100_000)
    prepaid = await b2b.new_vendor(balance=100_000)
    refunded = await _completed_order(b2b, first, quantity=2)
    await _completed_order(b2b, first)
    await _completed_order(b2b, second)
    await _completed_order(b2b, prepaid)
    refund = await b2b.api.post(
        f"/api/v1/vendor/orders/{refunded}/refund",
        json={"reason": "the traveller cancelled"},
        headers={**first.headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert refund.status_code == 201, refund.text
    for _ in range(100):  # the refund credits the wallet from its workflow
        async with b2b.sessions() as session:
            credited = await session.scalar(
                select(VendorLedgerEntry.id).where(VendorLedgerEntry.entry_type == LedgerEntryType.REFUND)
            )
        if credited:
            break
        await asyncio.sleep(0.1)
    assert credited, "the refund reached the ledger"

    await _into_period(b2b)
    recorded = f"invoicing-history-{uuid.uuid4().hex[:8]}"
    result = await _run(b2b, recorded)

    assert result.period == PERIOD
    assert len(result.created) == 2, "one invoice per POSTPAID vendor with orders, none for PREPAID"
    async with b2b.sessions() as session:
        invoices = {str(i.vendor_id): i for i in await session.scalars(select(Invoice))}
    assert set(invoices) == {first.id, second.id}
    for vendor in (first, second):
        invoice = invoices[vendor.id]
        assert invoice.total_minor == await _billed(b2b, vendor.id) > 0
        assert invoice.status == "ISSUED" and invoice.period == PERIOD
        assert invoice.due_at - invoice.issued_at == timedelta(days=30), "the vendor's payment terms"
    one = invoices[first.id]
    assert one.refunds_minor > 0 and one.total_minor == one.debits_minor - one.refunds_minor
    detail = (await b2b.api.get(f"/api/v1/vendor/invoices/{one.id}", headers=first.headers)).json()
    assert sum(line["amount_minor"] for line in detail["lines"]) == one.total_minor
    assert [line["quantity"] for line in detail["lines"]] == [3], "three eSIMs of the one bundle"

    again = await _run(b2b)
    assert again.created == [], "a second run issues nothing"
    assert {i.number for i in again.invoices} == {i.number for i in invoices.values()}
    numbers = await _numbers(b2b)
    assert len(numbers) == 2 and _without_gaps(numbers)
    async with b2b.sessions() as session:
        mails = (
            await session.scalars(select(Notification).where(Notification.template == "invoice_issued"))
        ).all()
    assert sorted(str(m.vendor_id) for m in mails) == sorted((first.id, second.id)), "one e-mail each"

    if name := os.environ.get("TTELGO_RECORD_HISTORIES"):
        history = await b2b.temporal.get_workflow_handle(recorded).fetch_history()
        (Path(__file__).parents[1] / "histories" / f"invoicing_{name}.json").write_text(history.to_json())


async def test_issuing_the_same_invoice_concurrently_makes_one_and_leaves_no_gap(b2b: B2B) -> None:
    """A retried activity racing its first attempt (a worker killed mid-run): one invoice, one number."""
    racing = await b2b.new_vendor(billing_mode="POSTPAID", credit_limit=100_000)
    other = await b2b.new_vendor(billing_mode="POSTPAID", credit_limit=100_000)
    await _completed_order(b2b, racing)
    await _completed_order(b2b, other)
    await _into_period(b2b)

    async def issue(vendor_id: str) -> tuple[str, bool]:
        async with b2b.sessions() as session, session.begin():
            invoice, _, created = await invoicing.issue_invoice(
                session, uuid.UUID(vendor_id), PERIOD, datetime.now(UTC)
            )
            return invoice.number, created

    outcomes = await asyncio.gather(*(issue(racing.id) for _ in range(5)))
    assert len({number for number, _ in outcomes}) == 1
    assert sorted(created for _, created in outcomes) == [False] * 4 + [True]
    await issue(other.id)
    numbers = await _numbers(b2b)
    assert len(numbers) == 2 and _without_gaps(numbers), "the losers gave their numbers back"


async def test_an_overdue_invoice_suspends_orders_until_an_admin_settles_it(b2b: B2B) -> None:
    vendor = await b2b.new_vendor(billing_mode="POSTPAID", credit_limit=100_000)
    prepaid = await b2b.new_vendor(balance=10_000)
    await _completed_order(b2b, vendor)
    this_month = datetime.now(UTC).strftime("%Y-%m")
    early = await b2b.api.post(
        "/api/v1/admin/invoices/run",
        json={"vendor_id": vendor.id, "period": this_month},
        headers={**b2b.admin, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert early.status_code == 422 and "has not ended" in early.json()["detail"], early.text
    with pytest.raises(invoicing.PeriodNotOver):  # and the kernel refuses it whoever asks
        async with b2b.sessions() as session, session.begin():
            await invoicing.issue_invoice(session, uuid.UUID(vendor.id), this_month, datetime.now(UTC))
    await _into_period(b2b)
    key = {"Idempotency-Key": str(uuid.uuid4())}

    refused = await b2b.api.post(
        "/api/v1/admin/invoices/run",
        json={"vendor_id": prepaid.id, "period": PERIOD},
        headers={**b2b.admin, **key},
    )
    assert refused.status_code == 409, refused.text
    issued = await b2b.api.post(
        "/api/v1/admin/invoices/run",
        json={"vendor_id": vendor.id, "period": PERIOD},
        headers={**b2b.admin, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert issued.status_code == 200, issued.text
    invoice = issued.json()
    assert invoice["total_minor"] == await _billed(b2b, vendor.id)
    listed = (await b2b.api.get("/api/v1/vendor/invoices", headers=vendor.headers)).json()
    assert [i["id"] for i in listed["items"]] == [invoice["id"]]
    assert (await b2b.api.get("/api/v1/vendor/invoices", headers=prepaid.headers)).json()["items"] == []
    other = await b2b.api.get(f"/api/v1/vendor/invoices/{invoice['id']}", headers=prepaid.headers)
    assert other.status_code == 404 and other.json()["code"] == "INVOICE_NOT_FOUND"
    html = await b2b.api.get(f"/api/v1/vendor/invoices/{invoice['id']}/html", headers=vendor.headers)
    assert html.headers["content-type"].startswith("text/html") and invoice["number"] in html.text
    csv = await b2b.api.get(f"/api/v1/admin/invoices/{invoice['id']}/csv", headers=b2b.admin)
    assert csv.text.splitlines()[1].split(",")[:2] == ["esim_1GB_7D_FR_V2", "1"]

    await _completed_order(b2b, vendor)  # issued, not yet due: orders go on
    async with b2b.sessions() as session, session.begin():
        past_grace = datetime.now(UTC) - timedelta(days=b2b.settings.invoice_grace_days + 1)
        await session.execute(
            update(Invoice).where(Invoice.id == uuid.UUID(invoice["id"])).values(due_at=past_grace)
        )
    blocked = await b2b.order(vendor)
    assert blocked.status_code == 402, blocked.text
    assert blocked.json()["code"] == "INVOICE_OVERDUE" and invoice["number"] in blocked.json()["detail"]

    settled = await b2b.api.post(
        f"/api/v1/admin/invoices/{invoice['id']}/settle",
        json={"reason": "bank transfer received"},
        headers=b2b.admin,
    )
    assert settled.status_code == 200, settled.text
    assert settled.json()["status"] == "PAID" and settled.json()["paid_at"]
    await _completed_order(b2b, vendor)
    async with b2b.sessions() as session:
        actions = (
            await session.scalars(select(AuditLog.action).where(AuditLog.action.like("invoice.%")))
        ).all()
    # Settling by hand books the bank transfer as an adjustment credit (invoice.credit), then marks it PAID.
    assert sorted(actions) == ["invoice.credit", "invoice.run", "invoice.settle"]
