"""POSTPAID invoicing: a vendor's posted order debits and refunds of one month, totalled from its ledger
statement into an invoice numbered without gaps, exactly once per vendor and month.

Every function works inside the caller's transaction. `issue_invoice` takes the year's counter row lock,
inserts with ON CONFLICT DO NOTHING on (vendor, period) and rolls the counter back when the invoice exists
already, so a retried or concurrent issue neither duplicates an invoice nor leaves a hole in the numbers.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import case, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from ttelgo.audit import record_action
from ttelgo.errors import AppError
from ttelgo.mail.render import render_html
from ttelgo.models import (
    BillingMode,
    Invoice,
    InvoiceCounter,
    InvoiceLine,
    InvoiceStatus,
    LedgerEntryType,
    Order,
    Vendor,
    VendorLedgerEntry,
)

PERIOD = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])$")
INVOICE_TEMPLATE = "invoice_issued"  # the e-mail is the invoice: its HTML body is the stored rendering
BILLED = (LedgerEntryType.ORDER_DEBIT, LedgerEntryType.REFUND)
NO_BUNDLE = "(no order)"  # a billed entry without an order still counts, on a line of its own


def period_bounds(period: str) -> tuple[datetime, datetime]:
    """[first instant of the month, first instant of the next), in UTC."""
    if not PERIOD.match(period):
        raise ValueError(f"not a month (YYYY-MM): {period!r}")
    year, month = int(period[:4]), int(period[5:])
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return start, end


class PeriodNotOver(ValueError):
    """A month is invoiced once, so only after it has ended: an earlier invoice would miss the rest of it."""


def ensure_period_over(period: str, now: datetime) -> None:
    if period_bounds(period)[1] > now:
        raise PeriodNotOver(f"{period} has not ended yet: a month is invoiced once, after its last day")


def month_before(moment: datetime) -> str:
    """The month a run at `moment` invoices: the one before it (UTC)."""
    first = moment.astimezone(UTC).replace(day=1)
    return (first - timedelta(days=1)).strftime("%Y-%m")


@dataclass(frozen=True)
class Line:
    bundle_code: str
    quantity: int
    amount_minor: int


async def invoiceable_vendors(
    session: AsyncSession, period: str, vendor_id: uuid.UUID | None = None
) -> list[uuid.UUID]:
    """POSTPAID vendors with billed entries in the period (or just `vendor_id`, if it is one of them)."""
    start, end = period_bounds(period)
    query = (
        select(Vendor.id)
        .where(
            Vendor.billing_mode == BillingMode.POSTPAID,
            select(VendorLedgerEntry.id)
            .where(
                VendorLedgerEntry.vendor_id == Vendor.id,
                VendorLedgerEntry.entry_type.in_(BILLED),
                VendorLedgerEntry.created_at >= start,
                VendorLedgerEntry.created_at < end,
            )
            .exists(),
        )
        .order_by(Vendor.id)
    )
    if vendor_id is not None:
        query = query.where(Vendor.id == vendor_id)
    return list(await session.scalars(query))


async def billed_lines(session: AsyncSession, vendor: Vendor, period: str) -> tuple[list[Line], int, int]:
    """The lines per bundle, total debits and total refunds, read from the vendor's statement."""
    start, end = period_bounds(period)
    debit = VendorLedgerEntry.entry_type == LedgerEntryType.ORDER_DEBIT
    bundle = func.coalesce(Order.bundle_code, NO_BUNDLE)
    rows = await session.execute(
        select(
            bundle,
            func.coalesce(func.sum(case((debit, Order.quantity), else_=0)), 0),
            func.coalesce(func.sum(case((debit, -VendorLedgerEntry.amount_minor), else_=0)), 0),
            func.coalesce(func.sum(case((debit, 0), else_=VendorLedgerEntry.amount_minor)), 0),
        )
        .select_from(VendorLedgerEntry)
        .outerjoin(Order, Order.id == VendorLedgerEntry.order_id)
        .where(
            VendorLedgerEntry.vendor_id == vendor.id,
            VendorLedgerEntry.currency == vendor.currency,
            VendorLedgerEntry.entry_type.in_(BILLED),
            VendorLedgerEntry.created_at >= start,
            VendorLedgerEntry.created_at < end,
        )
        .group_by(bundle)
        .order_by(bundle)
    )
    lines, debits, refunds = [], 0, 0
    for code, quantity, debited, refunded in rows:
        lines.append(Line(code, int(quantity), int(debited) - int(refunded)))
        debits, refunds = debits + int(debited), refunds + int(refunded)
    return lines, debits, refunds


def render_csv(lines: list[Line], currency: str) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["bundle_code", "quantity", "amount_minor", "currency"])
    for line in lines:
        writer.writerow([line.bundle_code, line.quantity, line.amount_minor, currency])
    return out.getvalue()


def mail_payload(invoice: Invoice, vendor_name: str, lines: list[Line]) -> dict[str, object]:
    """The invoice's fields for its template (the stored HTML and the e-mail)."""
    return {
        "vendor_name": vendor_name,
        "number": invoice.number,
        "period": invoice.period,
        "issued": invoice.issued_at.date().isoformat(),
        "due": invoice.due_at.date().isoformat(),
        "debits_minor": invoice.debits_minor,
        "refunds_minor": invoice.refunds_minor,
        "total_minor": invoice.total_minor,
        "currency": invoice.currency,
        "lines": [
            {"bundle_code": x.bundle_code, "quantity": x.quantity, "amount_minor": x.amount_minor}
            for x in lines
        ],
    }


async def _next_number(session: AsyncSession, year: int) -> str:
    """Takes the year's next number, locking its counter row until the transaction ends."""
    number = await session.scalar(
        insert(InvoiceCounter)
        .values(year=year, last_number=1)
        .on_conflict_do_update(index_elements=["year"], set_={"last_number": InvoiceCounter.last_number + 1})
        .returning(InvoiceCounter.last_number)
    )
    return f"INV-{year}-{number:06d}"


async def find_invoice(session: AsyncSession, vendor_id: uuid.UUID, period: str) -> Invoice | None:
    return await session.scalar(
        select(Invoice).where(Invoice.vendor_id == vendor_id, Invoice.period == period)
    )


async def issue_invoice(
    session: AsyncSession, vendor_id: uuid.UUID, period: str, now: datetime
) -> tuple[Invoice, list[Line], bool]:
    """The vendor's invoice for the period, its lines, and whether this call created it. The year's
    counter row stays locked until the caller's transaction ends, so numbers are given in commit order."""
    ensure_period_over(period, now)
    vendor = await session.get(Vendor, vendor_id)
    if vendor is None:
        raise ValueError(f"no vendor {vendor_id}")
    lines, debits, refunds = await billed_lines(session, vendor, period)
    # A savepoint, so that losing the race to an existing invoice gives its number back.
    savepoint = await session.begin_nested()
    number = await _next_number(session, now.year)
    invoice_id = uuid.uuid4()
    values = {
        "id": invoice_id,
        "number": number,
        "vendor_id": vendor.id,
        "period": period,
        "currency": vendor.currency,
        "debits_minor": debits,
        "refunds_minor": refunds,
        "total_minor": debits - refunds,
        "issued_at": now,
        "due_at": now + timedelta(days=vendor.payment_terms_days),
        "status": InvoiceStatus.ISSUED,
        "html": "",
        "csv": render_csv(lines, vendor.currency),
    }
    created = await session.scalar(
        insert(Invoice)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["vendor_id", "period"])
        .returning(Invoice.id)
    )
    if created is None:  # issued before (a retry, a second run)
        await savepoint.rollback()
        existing = await find_invoice(session, vendor_id, period)
        assert existing is not None
        return existing, await _lines(session, existing.id), False
    await savepoint.commit()
    invoice = await session.get(Invoice, invoice_id)
    assert invoice is not None
    invoice.html = render_html(INVOICE_TEMPLATE, mail_payload(invoice, vendor.name, lines))
    session.add_all(InvoiceLine(invoice_id=invoice_id, **line.__dict__) for line in lines)
    await session.flush()
    return invoice, lines, True


async def _lines(session: AsyncSession, invoice_id: uuid.UUID) -> list[Line]:
    rows = await session.scalars(
        select(InvoiceLine).where(InvoiceLine.invoice_id == invoice_id).order_by(InvoiceLine.bundle_code)
    )
    return [Line(r.bundle_code, r.quantity, r.amount_minor) for r in rows]


async def overdue_invoice(
    session: AsyncSession, vendor_id: uuid.UUID, now: datetime, grace_days: int
) -> Invoice | None:
    """The oldest unpaid invoice more than `grace_days` past its due date, if any."""
    return await session.scalar(
        select(Invoice)
        .where(
            Invoice.vendor_id == vendor_id,
            Invoice.status == InvoiceStatus.ISSUED,
            Invoice.total_minor > 0,  # a month of refunds owes nothing: it never blocks ordering
            Invoice.due_at < now - timedelta(days=grace_days),
        )
        .order_by(Invoice.due_at)
        .limit(1)
    )


async def refuse_if_overdue(session: AsyncSession, vendor_id: uuid.UUID, grace_days: int) -> None:
    invoice = await overdue_invoice(session, vendor_id, datetime.now(UTC), grace_days)
    if invoice is not None:
        raise AppError(
            "INVOICE_OVERDUE",
            f"invoice {invoice.number} was due on {invoice.due_at.date().isoformat()}: new orders are "
            "suspended until it is paid",
            extra={"invoice_id": str(invoice.id), "invoice_number": invoice.number},
        )


async def settle(
    session: AsyncSession,
    invoice_id: uuid.UUID,
    *,
    actor: str,
    reason: str | None,
    request_id: str | None,
) -> Invoice:
    """Marks an ISSUED invoice PAID (audited in the same transaction); a PAID one is answered unchanged."""
    invoice = await session.get(Invoice, invoice_id, with_for_update=True)
    if invoice is None:
        raise AppError("INVOICE_NOT_FOUND", f"no invoice {invoice_id}")
    if invoice.status is InvoiceStatus.VOID:
        raise AppError("CONFLICT", f"invoice {invoice.number} is void")
    if invoice.status is InvoiceStatus.PAID:
        return invoice
    invoice.status, invoice.paid_at = InvoiceStatus.PAID, datetime.now(UTC)
    record_action(
        session,
        actor=actor,
        action="invoice.settle",
        target_type="invoice",
        target_id=invoice.id,
        before={"status": InvoiceStatus.ISSUED.value},
        after={"status": invoice.status.value, "paid_at": invoice.paid_at.isoformat()},
        reason=reason,
        request_id=request_id,
    )
    return invoice
