"""Vendor self-service: my POSTPAID invoices, with their lines and stored HTML and CSV renderings."""

from __future__ import annotations

import uuid
from typing import Literal

from fastapi import APIRouter, Response

from api.deps import AnyVendor, Session
from api.invoices import DOCUMENTS, document, get_invoice, invoice_detail, invoices_query
from api.pagination import Page, Paging
from api.schemas.invoices import InvoiceDetail, InvoiceOut, Period
from ttelgo.models import InvoiceStatus

router = APIRouter(prefix="/api/v1/vendor/invoices", tags=["vendor: invoices"])


@router.get("", response_model=Page[InvoiceOut], summary="My invoices, newest period first")
async def list_invoices(
    caller: AnyVendor,
    session: Session,
    paging: Paging,
    period: Period | None = None,
    status: InvoiceStatus | None = None,
) -> Page[InvoiceOut]:
    return await paging.fetch_page(session, invoices_query(caller.vendor_id, period, status), InvoiceOut)


@router.get(
    "/{invoice_id}",
    response_model=InvoiceDetail,
    summary="One of my invoices with its lines",
    responses={404: {"description": "INVOICE_NOT_FOUND"}},
)
async def get_one(invoice_id: uuid.UUID, caller: AnyVendor, session: Session) -> InvoiceDetail:
    return await invoice_detail(session, await get_invoice(session, invoice_id, caller.vendor_id))


@router.get(
    "/{invoice_id}/{kind}",
    response_class=Response,
    summary="One of my invoices as stored: `html` (the document) or `csv` (its lines)",
    responses=DOCUMENTS,
)
async def get_document(
    invoice_id: uuid.UUID, kind: Literal["html", "csv"], caller: AnyVendor, session: Session
) -> Response:
    return document(await get_invoice(session, invoice_id, caller.vendor_id), kind)
