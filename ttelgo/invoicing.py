"""POSTPAID invoicing: a vendor's posted order debits and refunds of one month, totalled from its ledger
statement into an invoice numbered without gaps, exactly once per vendor and month.

Only what was bought on credit is invoiced: each debit or refund is billed by its order's `billing_mode`,
the vendor's mode when the order was placed (api/placing.py), not by the vendor's mode today. A PREPAID
order was paid from the balance, so a switch to POSTPAID mid-month does not invoice it again, and a
POSTPAID order is still invoiced after a switch back to PREPAID. An entry without an order, or of an order
placed before the column existed and not backfilled (its workflow started earlier), goes by the vendor's
mode today.

Every function works inside the caller's transaction. `issue_invoice` takes the year's counter row lock,
inserts with ON CONFLICT DO NOTHING on (vendor, period) and rolls the counter back when the invoice exists
already, so a retried or concurrent issue neither duplicates an invoice nor leaves a hole in the numbers.

Paying is cumulative, read from the vendor's statement: an invoice is paid once the vendor's payments
(card top-ups and admin adjustments, whenever made) cover what it owed, net, at the end of its month (or of
a later one, whose refunds lower the debt). A partial payment settles nothing but counts towards the next;
money paid in advance settles an invoice as soon as it is issued; invoices are paid oldest first.
`settle_covered` marks them PAID right after the payment's transfer has committed (the ledger commits each
transfer in a transaction of its own): it only reads committed rows, so it never settles without the
payment, and a retry settles nothing twice. Should it be cut short in between, the overdue check already
reads the same coverage, so ordering is never refused for a paid invoice, and the next payment, issue or
retry marks it. Issuing, settling and debiting hold the vendor's advisory lock (`lock_vendor`), so a
payment's settlement waits for an invoice being issued and then sees it.

Coverage only counts money in the ledger, so an invoice is never PAID on a promise: an admin settling one
by hand ("bank transfer received", `settle_by_hand`) books an adjustment credit for what payments do not
cover yet, and a debit adjustment that would take back money an invoice was paid with is refused
(`refuse_uncovering_debit`): PAID is final.
"""

from __future__ import annotations

import csv
import io
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, and_, case, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from ttelgo import ledger
from ttelgo.audit import record_action
from ttelgo.audit_first import audited_transfer
from ttelgo.errors import AppError
from ttelgo.locks import LockSpace, hold
from ttelgo.mail.render import render_html
from ttelgo.models import (
    AccountKind,
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
from ttelgo.months import MONTH

INVOICE_TEMPLATE = "invoice_issued"  # the e-mail is the invoice: its HTML body is the stored rendering
BILLED = (LedgerEntryType.ORDER_DEBIT, LedgerEntryType.REFUND)
PAYMENTS = (LedgerEntryType.TOPUP, LedgerEntryType.ADJUSTMENT)
PAYMENTS_ACTOR = "system:payments"  # the audit actor of an invoice settled by a card top-up
NO_BUNDLE = "(no order)"  # a billed entry without an order still counts, on a line of its own


async def lock_vendor(session: AsyncSession, vendor_id: uuid.UUID) -> None:
    """Serialises, per vendor, issuing an invoice, settling and debiting against its invoices (until the
    transaction ends)."""
    await hold(session, LockSpace.VENDOR_INVOICES, vendor_id)


def period_bounds(period: str) -> tuple[datetime, datetime]:
    """[first instant of the month, first instant of the next), in UTC."""
    if not MONTH.match(period):
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


def _billed_on_credit(period: str) -> ColumnElement[bool]:
    """A statement row of the period that an invoice bills (the caller joins its order, outer)."""
    start, end = period_bounds(period)
    owner = aliased(Vendor)
    today = select(owner.billing_mode).where(owner.id == VendorLedgerEntry.vendor_id).scalar_subquery()
    return and_(
        VendorLedgerEntry.entry_type.in_(BILLED),
        VendorLedgerEntry.created_at >= start,
        VendorLedgerEntry.created_at < end,
        func.coalesce(Order.billing_mode, today) == BillingMode.POSTPAID,
    )


async def invoiceable_vendors(
    session: AsyncSession, period: str, vendor_id: uuid.UUID | None = None
) -> list[uuid.UUID]:
    """Vendors with entries of the period billed on credit (or just `vendor_id`, if it is one of them),
    whatever their mode today."""
    query = (
        select(Vendor.id)
        .where(
            select(VendorLedgerEntry.id)
            .outerjoin(Order, Order.id == VendorLedgerEntry.order_id)
            .where(VendorLedgerEntry.vendor_id == Vendor.id, _billed_on_credit(period))
            .exists(),
        )
        .order_by(Vendor.id)
    )
    if vendor_id is not None:
        query = query.where(Vendor.id == vendor_id)
    return list(await session.scalars(query))


async def billed_lines(session: AsyncSession, vendor: Vendor, period: str) -> tuple[list[Line], int, int]:
    """The lines per bundle, total debits and total refunds, read from the vendor's statement."""
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
            _billed_on_credit(period),
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
    await lock_vendor(session, vendor_id)
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


@dataclass(frozen=True)
class Coverage:
    """A vendor's payments in one currency, and what it was billed month by month."""

    paid_minor: int  # top-ups and adjustments, whenever made
    owed_by_month: dict[str, int]  # YYYY-MM → net order debits less refunds (positive: owed)

    def covers(self, period: str) -> bool:
        """What the vendor owed, net, at the end of `period` or of any later month has been paid for (a
        later month's refunds lower what is owed for the earlier ones too). True for a month implies true
        for every earlier one, so invoices are paid oldest first."""
        return self.shortfall(period) == 0

    def shortfall(self, period: str) -> int:
        """What payments still lack to cover `period` (0: covered)."""
        running, lowest = 0, None
        for month in sorted(self.owed_by_month):
            running += self.owed_by_month[month]
            if month >= period:
                lowest = running if lowest is None else min(lowest, running)
        return max(0, (running if lowest is None else lowest) - self.paid_minor)

    def less(self, amount_minor: int) -> Coverage:
        """These payments less `amount_minor` (a debit adjustment)."""
        return Coverage(self.paid_minor - amount_minor, self.owed_by_month)


async def coverage(session: AsyncSession, vendor_id: uuid.UUID, currency: str) -> Coverage:
    """One statement over the vendor's statement rows, so one snapshot while orders keep posting."""
    entry = VendorLedgerEntry
    month = func.to_char(func.timezone("UTC", entry.created_at), "YYYY-MM")
    paid = entry.entry_type.in_(PAYMENTS)
    rows = await session.execute(
        select(
            month,
            func.coalesce(func.sum(case((paid, entry.amount_minor), else_=0)), 0),
            func.coalesce(func.sum(case((paid, 0), else_=-entry.amount_minor)), 0),
        )
        .where(
            entry.vendor_id == vendor_id,
            entry.currency == currency,
            entry.entry_type.in_(PAYMENTS + BILLED),
        )
        .group_by(month)
    )
    paid_minor, owed = 0, {}
    for period, paid_in, billed in rows:
        paid_minor += int(paid_in)
        owed[period] = int(billed)
    return Coverage(paid_minor, owed)


async def overdue_invoice(
    session: AsyncSession, vendor_id: uuid.UUID, now: datetime, grace_days: int
) -> Invoice | None:
    """The oldest unpaid invoice more than `grace_days` past its due date that payments do not cover yet
    (one the payments cover no longer blocks, even before `settle_covered` has marked it PAID)."""
    candidates = list(
        await session.scalars(
            select(Invoice)
            .where(
                Invoice.vendor_id == vendor_id,
                Invoice.status == InvoiceStatus.ISSUED,
                Invoice.total_minor > 0,  # a month of refunds owes nothing: it never blocks ordering
                Invoice.due_at < now - timedelta(days=grace_days),
            )
            .order_by(Invoice.due_at)
        )
    )
    paid: dict[str, Coverage] = {}
    for invoice in candidates:
        if invoice.currency not in paid:
            paid[invoice.currency] = await coverage(session, vendor_id, invoice.currency)
        if not paid[invoice.currency].covers(invoice.period):
            return invoice
    return None


async def refuse_if_overdue(session: AsyncSession, vendor_id: uuid.UUID, grace_days: int) -> None:
    invoice = await overdue_invoice(session, vendor_id, datetime.now(UTC), grace_days)
    if invoice is not None:
        raise AppError(
            "INVOICE_OVERDUE",
            f"invoice {invoice.number} was due on {invoice.due_at.date().isoformat()}: new orders are "
            "suspended until it is paid",
            extra={"invoice_id": str(invoice.id), "invoice_number": invoice.number},
        )


def _mark_paid(
    session: AsyncSession,
    invoice: Invoice,
    *,
    actor: str,
    reason: str | None,
    request_id: str | None,
    paid_by: str | None = None,
) -> None:
    invoice.status, invoice.paid_at = InvoiceStatus.PAID, datetime.now(UTC)
    after = {"status": invoice.status.value, "paid_at": invoice.paid_at.isoformat()}
    if paid_by is not None:
        after["paid_by"] = paid_by
    record_action(
        session,
        actor=actor,
        action="invoice.settle",
        target_type="invoice",
        target_id=invoice.id,
        before={"status": InvoiceStatus.ISSUED.value},
        after=after,
        reason=reason,
        request_id=request_id,
    )


def settle_transfer_id(invoice_id: uuid.UUID, amount_minor: int) -> str:
    """The adjustment credit of an invoice settled by hand, named by what it makes up: a retry that finds
    the same shortfall replays it; one whose first credit landed finds none; one after money went out
    meanwhile books only the new shortfall."""
    return f"invoice-{invoice_id}:settle:{amount_minor}"


async def settle_by_hand(
    sessions: async_sessionmaker[AsyncSession],
    invoice_id: uuid.UUID,
    *,
    actor: str,
    reason: str | None,
    request_id: str | None,
) -> None:
    """An admin's "paid outside the product" (a bank transfer): books an ADJUSTMENT credit to the wallet for
    what the vendor's payments do not cover yet (audited `invoice.credit`, see `ttelgo.audit_first`), then
    settles through `settle_covered`, so the money is in the ledger and the next invoice's coverage counts
    it. A PAID invoice is left unchanged; a retry replays the credit and settles nothing twice."""
    async with sessions() as session:
        found = await session.get(Invoice, invoice_id)
        if found is None:
            raise AppError("INVOICE_NOT_FOUND", f"no invoice {invoice_id}")
        # Made (and committed) beforehand: the ledger's own connection must see them.
        wallet = await ledger.vendor_wallet(session, found.vendor_id, found.currency)
        platform = await ledger.platform_account(session, AccountKind.ADJUSTMENTS, found.currency)
        await session.commit()
    async with sessions() as session, session.begin():
        await lock_vendor(session, found.vendor_id)
        invoice = await session.get_one(Invoice, invoice_id, populate_existing=True)
        if invoice.status is InvoiceStatus.VOID:
            raise AppError("CONFLICT", f"invoice {invoice.number} is void")
        if invoice.status is InvoiceStatus.PAID:
            return
        missing = (await coverage(session, invoice.vendor_id, invoice.currency)).shortfall(invoice.period)
        paid_by = None
        if missing:
            paid_by = settle_transfer_id(invoice.id, missing)
            async with audited_transfer(
                sessions,
                paid_by,
                actor=actor,
                action="invoice.credit",
                target_type="invoice",
                target_id=invoice.id,
                after={"amount_minor": missing, "vendor_id": str(invoice.vendor_id)},
                reason=reason,
                request_id=request_id,
            ):
                await ledger.create_transfer(
                    sessions,
                    ledger.TransferSpec(
                        id=paid_by,
                        debit_account_id=platform.id,
                        credit_account_id=wallet.id,
                        amount_minor=missing,
                        currency=invoice.currency,
                        code="adjustment",
                        entry_type=LedgerEntryType.ADJUSTMENT,
                        memo=f"invoice {invoice.number} settled by hand",
                    ),
                )
        await settle_covered(session, invoice.vendor_id, paid_by=paid_by, actor=actor, request_id=request_id)
        if invoice.status is not InvoiceStatus.PAID:  # the credit replayed, but money went out meanwhile
            raise AppError("CONFLICT", f"invoice {invoice.number} is still not covered; settle it again")


async def refuse_uncovering_debit(
    session: AsyncSession, vendor_id: uuid.UUID, currency: str, amount_minor: int
) -> None:
    """Refuses a debit adjustment that would take back money a PAID invoice was paid with (PAID is
    final). The caller holds `lock_vendor` until the debit has committed, so two debits cannot both pass."""
    paid = list(
        await session.scalars(
            select(Invoice)
            .where(
                Invoice.vendor_id == vendor_id,
                Invoice.currency == currency,
                Invoice.status == InvoiceStatus.PAID,
            )
            .order_by(Invoice.period.desc())
        )
    )
    if not paid:
        return
    now = await coverage(session, vendor_id, currency)
    after = now.less(amount_minor)
    for invoice in paid:
        if now.covers(invoice.period) and not after.covers(invoice.period):
            raise AppError(
                "INVOICE_PAYMENT_IN_USE",
                f"invoice {invoice.number} was paid with this money: a debit of {amount_minor} would leave "
                f"it {after.shortfall(invoice.period)} short",
                extra={"invoice_id": str(invoice.id), "invoice_number": invoice.number},
            )


async def settle_covered(
    session: AsyncSession,
    vendor_id: uuid.UUID,
    *,
    paid_by: str | None,
    actor: str = PAYMENTS_ACTOR,
    request_id: str | None = None,
) -> list[Invoice]:
    """Marks PAID, oldest month first, each of the vendor's ISSUED invoices its payments now cover, each
    with its audit row; `paid_by` (the payment's transfer id) goes into the row. The invoices are locked,
    so two payments settling at once settle each invoice once; the vendor's lock makes one that runs while
    an invoice is being issued wait for it and see it."""
    await lock_vendor(session, vendor_id)
    open_invoices = await session.scalars(
        select(Invoice)
        .where(Invoice.vendor_id == vendor_id, Invoice.status == InvoiceStatus.ISSUED)
        .order_by(Invoice.period)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    settled: list[Invoice] = []
    paid: dict[str, Coverage] = {}
    for invoice in open_invoices.all():
        if invoice.currency not in paid:
            paid[invoice.currency] = await coverage(session, vendor_id, invoice.currency)
        if paid[invoice.currency].covers(invoice.period):
            _mark_paid(
                session,
                invoice,
                actor=actor,
                reason="paid: payments cover everything billed up to the end of its month",
                request_id=request_id,
                paid_by=paid_by,
            )
            settled.append(invoice)
    await session.flush()
    return settled
