"""POSTPAID invoicing: which vendors to invoice for a month, and one vendor's invoice (see `ttelgo.invoicing`).

Issuing is idempotent: the invoice is unique per vendor and month, and its e-mail is an outbox row written
in the same transaction, unique per invoice. A retry after any crash finds both and only makes sure the
e-mail's delivery workflow runs.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contracts import (
    ISSUE_INVOICE,
    LIST_INVOICEABLE,
    InvoicePeriod,
    IssuedInvoice,
    IssueInvoice,
)
from activities.heartbeat import heartbeating
from activities.notifications import start_delivery
from ttelgo import invoicing
from ttelgo.models import Invoice, Notification, NotificationChannel, NotificationStatus, Vendor


class InvoicingActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], mail_retry_budget_s: int) -> None:
        self.sessions = sessions
        self.mail_retry_budget_s = mail_retry_budget_s

    @activity.defn(name=LIST_INVOICEABLE)
    async def list_vendors(self, request: InvoicePeriod) -> list[str]:
        async with heartbeating(), self.sessions() as session:
            found = await invoicing.invoiceable_vendors(session, request.period, request.vendor_id)
        return [str(vendor_id) for vendor_id in found]

    @activity.defn(name=ISSUE_INVOICE)
    async def issue(self, request: IssueInvoice) -> IssuedInvoice:
        async with heartbeating(), self.sessions() as session, session.begin():
            vendor = await session.get(Vendor, request.vendor_id)
            if vendor is None:
                raise ApplicationError(
                    f"no vendor {request.vendor_id}", type="VENDOR_NOT_FOUND", non_retryable=True
                )
            try:
                invoice, lines, created = await invoicing.issue_invoice(
                    session, vendor.id, request.period, datetime.now(UTC)
                )
            except invoicing.PeriodNotOver as exc:
                raise ApplicationError(str(exc), type="PERIOD_NOT_OVER", non_retryable=True) from exc
            if created:  # paid in advance: the payments already received may cover it
                await invoicing.settle_covered(session, vendor.id, paid_by=None)
            mail = await _queue_mail(session, invoice, vendor, lines)
        if mail.status is not NotificationStatus.SENT:
            await start_delivery(
                activity.client(), mail.id, activity.info().task_queue, self.mail_retry_budget_s
            )
        return IssuedInvoice(
            invoice_id=invoice.id, number=invoice.number, total_minor=invoice.total_minor, created=created
        )


async def _queue_mail(
    session: AsyncSession, invoice: Invoice, vendor: Vendor, lines: list[invoicing.Line]
) -> Notification:
    """The invoice's e-mail to the vendor's contact, written once per invoice."""
    key = f"{invoice.id}:{invoicing.INVOICE_TEMPLATE}"
    await session.execute(
        insert(Notification)
        .values(
            dedupe_key=key,
            vendor_id=vendor.id,
            channel=NotificationChannel.EMAIL,
            template=invoicing.INVOICE_TEMPLATE,
            recipient=vendor.contact_email,
            payload=invoicing.mail_payload(invoice, vendor.name, lines),
        )
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
    )
    row = await session.scalar(select(Notification).where(Notification.dedupe_key == key))
    assert row is not None
    return row
