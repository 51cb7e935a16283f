"""Reading invoices, shared by the vendor and admin routers: the detail with its lines, and the stored
HTML and CSV renderings as downloads."""

from __future__ import annotations

import uuid

from fastapi import Response
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.schemas.invoices import InvoiceDetail, InvoiceLineOut, InvoiceOut
from ttelgo.errors import AppError
from ttelgo.models import Invoice, InvoiceLine, InvoiceStatus

DOCUMENTS = {
    200: {"content": {"text/html": {}, "text/csv": {}}, "description": "the stored rendering"},
    404: {"description": "INVOICE_NOT_FOUND"},
}


def invoices_query(
    vendor_id: uuid.UUID | None, period: str | None, status: InvoiceStatus | None
) -> Select[tuple[Invoice]]:
    query = select(Invoice).order_by(Invoice.period.desc(), Invoice.number.desc())
    if vendor_id is not None:
        query = query.where(Invoice.vendor_id == vendor_id)
    if period is not None:
        query = query.where(Invoice.period == period)
    if status is not None:
        query = query.where(Invoice.status == status)
    return query


async def get_invoice(session: AsyncSession, invoice_id: uuid.UUID, vendor_id: uuid.UUID | None) -> Invoice:
    """The invoice; with `vendor_id`, only that vendor's (another vendor's looks exactly like a missing one)."""
    invoice = await session.get(Invoice, invoice_id)
    if invoice is None or (vendor_id is not None and invoice.vendor_id != vendor_id):
        raise AppError("INVOICE_NOT_FOUND", f"no invoice {invoice_id}")
    return invoice


async def invoice_detail(session: AsyncSession, invoice: Invoice) -> InvoiceDetail:
    lines = await session.scalars(
        select(InvoiceLine).where(InvoiceLine.invoice_id == invoice.id).order_by(InvoiceLine.bundle_code)
    )
    return InvoiceDetail(
        **InvoiceOut.model_validate(invoice).model_dump(),
        lines=[InvoiceLineOut.model_validate(line) for line in lines],
    )


def document(invoice: Invoice, kind: str) -> Response:
    """The stored HTML or CSV, named after the invoice number."""
    body, media_type = (invoice.html, "text/html") if kind == "html" else (invoice.csv, "text/csv")
    return Response(
        body,
        media_type=f"{media_type}; charset=utf-8",
        headers={"Content-Disposition": f'inline; filename="{invoice.number}.{kind}"'},
    )
