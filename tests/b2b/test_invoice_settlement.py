"""Settling POSTPAID invoices with the money in the ledger: an invoice settled by hand books the credit that
pays it (so the next invoice is judged right), a debit cannot take back money an invoice was paid with,
money paid in advance settles an invoice at issue, a payment racing an issue settles it, and the admin's
adjustment is audited before its money moves."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text, update

from api.routers import admin_vendors
from tests.b2b.conftest import B2B, VendorHandle
from ttelgo import invoicing, ledger
from ttelgo.models import AccountKind, AuditLog, Invoice, InvoiceStatus, LedgerEntryType, Transfer
from ttelgo.models import VendorLedgerEntry as Entry

PERIOD = invoicing.month_before(datetime.now(UTC))
EARLIER = invoicing.month_before(invoicing.period_bounds(PERIOD)[0])


async def _billed_in(b2b: B2B, vendor: VendorHandle, period: str) -> None:
    """A completed order whose statement rows are moved into `period`, as if it had been placed then."""
    since = datetime.now(UTC)
    response = await b2b.order(vendor)
    assert response.status_code == 201 and response.json()["status"] == "COMPLETED", response.text
    async with b2b.sessions() as session, session.begin():
        await session.execute(
            update(Entry)
            .where(Entry.vendor_id == uuid.UUID(vendor.id), Entry.created_at >= since)
            .values(created_at=invoicing.period_bounds(period)[0] + timedelta(days=1))
        )


async def _issue(b2b: B2B, vendor: VendorHandle, period: str) -> Invoice:
    async with b2b.sessions() as session, session.begin():
        invoice, _, created = await invoicing.issue_invoice(
            session, uuid.UUID(vendor.id), period, datetime.now(UTC)
        )
    assert created
    return invoice


async def _status(b2b: B2B, invoice_id: uuid.UUID) -> InvoiceStatus:
    async with b2b.sessions() as session:
        return (await session.get_one(Invoice, invoice_id)).status


async def _audit(b2b: B2B, action: str, target_id: object) -> list[AuditLog]:
    async with b2b.sessions() as session:
        rows = await session.scalars(
            select(AuditLog).where(AuditLog.action == action, AuditLog.target_id == str(target_id))
        )
        return list(rows)


async def _adjust(b2b: B2B, vendor: VendorHandle, amount: int, key: str | None = None) -> Any:
    return await b2b.api.post(
        f"/api/v1/admin/vendors/{vendor.id}/adjust-balance",
        json={"amount_minor": amount, "reason": "by hand"},
        headers={**b2b.admin, "Idempotency-Key": key or str(uuid.uuid4())},
    )


async def test_an_invoice_settled_by_hand_is_paid_in_the_ledger_so_the_next_one_is_judged_right(
    b2b: B2B,
) -> None:
    vendor = await b2b.new_vendor(billing_mode="POSTPAID", credit_limit=100_000)
    await _billed_in(b2b, vendor, EARLIER)
    first = await _issue(b2b, vendor, EARLIER)
    settle = f"/api/v1/admin/invoices/{first.id}/settle"
    settled = await b2b.api.post(settle, json={"reason": "bank transfer received"}, headers=b2b.admin)
    assert settled.status_code == 200 and settled.json()["status"] == "PAID", settled.text
    # The bank transfer is in the ledger: an adjustment credit of the invoice's total, the debt cleared.
    async with b2b.sessions() as session:
        credit = await session.get_one(Transfer, invoicing.settle_transfer_id(first.id, first.total_minor))
    assert (credit.amount_minor, credit.code) == (first.total_minor, "adjustment")
    assert (await b2b.wallet(vendor))["balance_minor"] == 0
    (credited,) = await _audit(b2b, "invoice.credit", first.id)
    assert credited.after == {
        "amount_minor": first.total_minor,
        "vendor_id": vendor.id,
        "transfer_id": credit.id,
    }
    assert credited.reason == "bank transfer received" and credited.actor_type == "admin"
    (marked,) = await _audit(b2b, "invoice.settle", first.id)
    assert marked.after and marked.after["paid_by"] == credit.id
    again = await b2b.api.post(settle, json={"reason": "bank transfer received"}, headers=b2b.admin)
    assert again.status_code == 200 and again.json()["paid_at"] == settled.json()["paid_at"]
    assert len(await _audit(b2b, "invoice.credit", first.id)) == 1

    # The next month, paid in full by a top-up, is PAID and blocks nothing.
    await _billed_in(b2b, vendor, PERIOD)
    second = await _issue(b2b, vendor, PERIOD)
    await b2b.adjust(vendor.id, second.total_minor)
    assert await _status(b2b, second.id) is InvoiceStatus.PAID
    async with b2b.sessions() as session, session.begin():
        past_grace = datetime.now(UTC) - timedelta(days=b2b.settings.invoice_grace_days + 1)
        await session.execute(update(Invoice).values(due_at=past_grace))
    assert (await b2b.order(vendor)).status_code == 201
    assert await b2b.invariants() == []


async def test_a_debit_that_would_take_back_an_invoices_payment_is_refused(b2b: B2B) -> None:
    vendor = await b2b.new_vendor(billing_mode="POSTPAID", credit_limit=100_000)
    await _billed_in(b2b, vendor, PERIOD)
    invoice = await _issue(b2b, vendor, PERIOD)
    await b2b.adjust(vendor.id, invoice.total_minor)
    assert await _status(b2b, invoice.id) is InvoiceStatus.PAID
    wallet = await b2b.wallet(vendor)

    refused = await _adjust(b2b, vendor, -1)
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "INVOICE_PAYMENT_IN_USE" and invoice.number in refused.json()["detail"]
    assert await b2b.wallet(vendor) == wallet
    assert [
        row.after and row.after["amount_minor"]
        for row in await _audit(b2b, "vendor.adjust_balance", vendor.id)
    ] == [invoice.total_minor]
    # Money beyond what the invoice took can be taken back.
    await b2b.adjust(vendor.id, 5)
    assert (await _adjust(b2b, vendor, -5)).status_code == 200
    assert (await _adjust(b2b, vendor, -1)).status_code == 409
    assert await _status(b2b, invoice.id) is InvoiceStatus.PAID


async def test_a_retried_debit_that_went_through_is_replayed_not_refused(
    b2b: B2B, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The debit committed, then the request died: the retry with its key must answer as the debit did,
    not count it a second time against the PAID invoice and answer 409 for money that already moved."""
    vendor = await b2b.new_vendor(billing_mode="POSTPAID", credit_limit=100_000)
    await _billed_in(b2b, vendor, PERIOD)
    invoice = await _issue(b2b, vendor, PERIOD)
    await b2b.adjust(vendor.id, invoice.total_minor + 40)

    async def crash(*_: object, **__: object) -> None:
        raise RuntimeError("the API process died after the transfer")

    monkeypatch.setattr(admin_vendors, "_detail", crash)
    key = str(uuid.uuid4())
    with contextlib.suppress(RuntimeError):
        await _adjust(b2b, vendor, -40, key)
    monkeypatch.undo()
    wallet = await b2b.wallet(vendor)
    assert wallet["balance_minor"] == 0  # the debit went through before the crash

    retried = await _adjust(b2b, vendor, -40, key)
    assert retried.status_code == 200, retried.text
    assert await b2b.wallet(vendor) == wallet  # replayed: no second debit
    assert await _status(b2b, invoice.id) is InvoiceStatus.PAID


async def test_a_settle_cut_short_then_money_taken_out_settles_on_the_next_try(
    b2b: B2B, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first settle booked its credit and died before marking the invoice; an admin then took money
    out. Settling again books only the new shortfall (a credit named by its amount), never a conflict that
    no retry could get past, and the first credit's audit row keeps the amount that moved."""
    vendor = await b2b.new_vendor(billing_mode="POSTPAID", credit_limit=100_000)
    await _billed_in(b2b, vendor, PERIOD)
    invoice = await _issue(b2b, vendor, PERIOD)
    settle = f"/api/v1/admin/invoices/{invoice.id}/settle"

    async def crash(*_: object, **__: object) -> None:
        raise RuntimeError("the API process died after the credit")

    monkeypatch.setattr(invoicing, "settle_covered", crash)
    with contextlib.suppress(RuntimeError):
        await b2b.api.post(settle, json={"reason": "bank transfer"}, headers=b2b.admin)
    monkeypatch.undo()
    assert await _status(b2b, invoice.id) is InvoiceStatus.ISSUED
    assert (await _adjust(b2b, vendor, -30)).status_code == 200

    settled = await b2b.api.post(settle, json={"reason": "bank transfer"}, headers=b2b.admin)
    assert settled.status_code == 200 and settled.json()["status"] == "PAID", settled.text
    async with b2b.sessions() as session:
        credits = await session.scalars(
            select(Transfer.amount_minor).where(Transfer.id.like(f"invoice-{invoice.id}:settle%"))
        )
        assert sorted(credits) == sorted([invoice.total_minor, 30])
    assert sorted(
        row.after["amount_minor"] for row in await _audit(b2b, "invoice.credit", invoice.id)
    ) == sorted([invoice.total_minor, 30])


async def test_money_paid_in_advance_settles_the_invoice_at_issue(b2b: B2B) -> None:
    vendor = await b2b.new_vendor(billing_mode="POSTPAID", credit_limit=100_000)
    await b2b.adjust(vendor.id, 50_000)  # paid in advance: no invoice to settle yet
    await _billed_in(b2b, vendor, PERIOD)
    issued = await b2b.api.post(
        "/api/v1/admin/invoices/run",
        json={"vendor_id": vendor.id, "period": PERIOD},
        headers={**b2b.admin, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert issued.status_code == 200, issued.text
    assert issued.json()["status"] == "PAID" and issued.json()["paid_at"]
    (marked,) = await _audit(b2b, "invoice.settle", issued.json()["id"])
    assert marked.actor_type == "system"


_WAITING_FOR_ADVISORY = text(
    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND wait_event = 'advisory'"
)


async def test_a_payment_settling_while_the_invoice_is_issued_waits_for_it_and_settles_it(b2b: B2B) -> None:
    vendor = await b2b.new_vendor(billing_mode="POSTPAID", credit_limit=100_000)
    vendor_id = uuid.UUID(vendor.id)
    await _billed_in(b2b, vendor, PERIOD)
    async with b2b.sessions() as session, session.begin():
        wallet = await ledger.vendor_wallet(session, vendor_id, "USD")
        platform = await ledger.platform_account(session, AccountKind.ADJUSTMENTS, "USD")

    async def pay() -> list[Invoice]:
        async with b2b.sessions() as session, session.begin():
            return await invoicing.settle_covered(session, vendor_id, paid_by="race-payment")

    async with b2b.sessions() as issuing, issuing.begin():
        invoice, _, _ = await invoicing.issue_invoice(issuing, vendor_id, PERIOD, datetime.now(UTC))
        assert not await invoicing.settle_covered(issuing, vendor_id, paid_by=None)  # not paid yet
        # The payment commits now, and its settlement runs before the issue has committed.
        await ledger.create_transfer(
            b2b.sessions,
            ledger.TransferSpec(
                id=f"race-payment-{vendor_id}",
                debit_account_id=platform.id,
                credit_account_id=wallet.id,
                amount_minor=invoice.total_minor,
                currency="USD",
                code="adjustment",
                entry_type=LedgerEntryType.ADJUSTMENT,
            ),
        )
        paying = asyncio.create_task(pay())
        for _ in range(200):  # until it waits for the issue (or, unlocked, has finished without it)
            async with b2b.sessions() as probe:
                if paying.done() or await probe.scalar(_WAITING_FOR_ADVISORY):
                    break
            await asyncio.sleep(0.05)
    settled = await paying
    assert [i.id for i in settled] == [invoice.id]
    assert await _status(b2b, invoice.id) is InvoiceStatus.PAID


async def test_an_adjustment_is_audited_before_its_money_moves(
    b2b: B2B, monkeypatch: pytest.MonkeyPatch
) -> None:
    vendor = await b2b.new_vendor(billing_mode="POSTPAID", credit_limit=100_000)

    async def crash(*_: object, **__: object) -> None:
        raise RuntimeError("the API process died after the transfer")

    monkeypatch.setattr(invoicing, "settle_covered", crash)
    key = str(uuid.uuid4())
    with contextlib.suppress(RuntimeError):
        crashed = await _adjust(b2b, vendor, 700, key)
        assert crashed.status_code == 500
    async with b2b.sessions() as session:
        moved = await session.scalar(
            select(Transfer).where(Transfer.code == "adjustment", Transfer.amount_minor == 700)
        )
    assert moved is not None
    (row,) = await _audit(b2b, "vendor.adjust_balance", vendor.id)
    assert row.after == {"amount_minor": 700, "transfer_id": moved.id}
    monkeypatch.undo()

    # The retry replays the transfer and keeps the one row; a refused debit leaves none.
    assert (await _adjust(b2b, vendor, 700, key)).status_code == 200
    assert len(await _audit(b2b, "vendor.adjust_balance", vendor.id)) == 1
    assert (await b2b.wallet(vendor))["balance_minor"] == 700
    prepaid = await b2b.new_vendor()
    refused = await _adjust(b2b, prepaid, -1)
    assert refused.status_code == 402, refused.text
    assert await _audit(b2b, "vendor.adjust_balance", prepaid.id) == []
