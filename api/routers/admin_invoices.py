"""Admin: every vendor's POSTPAID invoices; issue one vendor's invoice for a month now (the `invoicing`
Schedule does every vendor monthly); settle an invoice paid outside the product. Both are audited."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError

from api.deps import Admin, Session, request_id
from api.idempotency import idempotent
from api.invoices import DOCUMENTS, document, get_invoice, invoice_detail, invoices_query
from api.pagination import Page, Paging
from api.problems import RETRY_AFTER_S
from api.schemas.invoices import InvoiceDetail, InvoiceOut, InvoiceRun, InvoiceSettle, Period
from ttelgo import invoicing, vendors
from ttelgo.audit import audited
from ttelgo.errors import AppError
from ttelgo.models import BillingMode, InvoiceStatus
from workflows.invoicing import InvoicingInput, InvoicingResult, InvoicingWorkflow, on_demand_workflow_id

router = APIRouter(prefix="/api/v1/admin/invoices", tags=["admin: invoices"])
RUN_WAIT_S = 30  # one vendor's invoice takes a moment; past this the run goes on and the list shows it


@router.get("", response_model=Page[InvoiceOut], summary="Invoices, newest period first")
async def list_invoices(
    _: Admin,
    session: Session,
    paging: Paging,
    vendor_id: uuid.UUID | None = None,
    period: Period | None = None,
    status: InvoiceStatus | None = None,
) -> Page[InvoiceOut]:
    return await paging.fetch_page(session, invoices_query(vendor_id, period, status), InvoiceOut)


@router.post(
    "/run",
    response_model=InvoiceDetail,
    summary="Issue one POSTPAID vendor's invoice for a month now (Idempotency-Key required); an invoice "
    "issued before is answered as it is",
    responses={
        202: {"description": "still running: the invoice will be in the list"},
        404: {"description": "VENDOR_NOT_FOUND, or INVOICE_NOT_FOUND: nothing was billed that month"},
        409: {"description": "CONFLICT: the vendor is not POSTPAID"},
        503: {"description": "SERVICE_UNAVAILABLE + Retry-After: Temporal is unreachable"},
    },
)
async def run(request: Request, body: InvoiceRun, admin: Admin) -> Response:
    async def handle() -> Response:
        async with request.app.state.sessions() as session:
            vendor = await vendors.get_vendor(session, body.vendor_id)
        if vendor.billing_mode is not BillingMode.POSTPAID:
            raise AppError("CONFLICT", "only POSTPAID vendors are invoiced")
        try:
            invoicing.ensure_period_over(body.period, datetime.now(UTC))
        except invoicing.PeriodNotOver as exc:
            raise AppError("VALIDATION_ERROR", str(exc)) from exc
        workflow_id = on_demand_workflow_id(vendor.id, body.period)
        async with audited(
            request.app.state.sessions,
            actor=admin.actor,
            action="invoice.run",
            target_type="vendor",
            target_id=vendor.id,
            after={"period": body.period, "workflow_id": workflow_id},
            request_id=request_id(request),
        ) as entry:
            try:
                started = await request.app.state.temporal.start_workflow(
                    InvoicingWorkflow.run,
                    InvoicingInput(period=body.period, vendor_id=vendor.id),
                    id=workflow_id,
                    task_queue=request.app.state.settings.temporal_task_queue,
                    id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                    id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                )
            except (RPCError, RuntimeError) as exc:
                raise AppError(
                    "SERVICE_UNAVAILABLE",
                    "Temporal is unreachable; no invoice was issued",
                    extra={"dependency": "Temporal"},
                    headers={"Retry-After": str(RETRY_AFTER_S)},
                ) from exc
            try:
                result: InvoicingResult = await asyncio.wait_for(started.result(), RUN_WAIT_S)
            except TimeoutError:
                return JSONResponse({"workflow_id": workflow_id}, status_code=202)
            entry.after = {**(entry.after or {}), "invoices": [i.number for i in result.invoices]}
        async with request.app.state.sessions() as session:
            invoice = await invoicing.find_invoice(session, vendor.id, body.period)
            if invoice is None:
                raise AppError("INVOICE_NOT_FOUND", f"nothing was billed to this vendor in {body.period}")
            detail = await invoice_detail(session, invoice)
        return JSONResponse(detail.model_dump(mode="json"))

    return await idempotent(request, admin.actor, handle)


@router.get(
    "/{invoice_id}",
    response_model=InvoiceDetail,
    summary="One invoice with its lines",
    responses={404: {"description": "INVOICE_NOT_FOUND"}},
)
async def get_one(invoice_id: uuid.UUID, _: Admin, session: Session) -> InvoiceDetail:
    return await invoice_detail(session, await get_invoice(session, invoice_id, None))


@router.get(
    "/{invoice_id}/{kind}",
    response_class=Response,
    summary="One invoice as stored: `html` (the document) or `csv` (its lines)",
    responses=DOCUMENTS,
)
async def get_document(
    invoice_id: uuid.UUID, kind: Literal["html", "csv"], _: Admin, session: Session
) -> Response:
    return document(await get_invoice(session, invoice_id, None), kind)


@router.post(
    "/{invoice_id}/settle",
    response_model=InvoiceDetail,
    summary="Settle an invoice paid outside the product (a bank transfer): an adjustment credit for what "
    "the vendor's payments do not cover yet, then PAID (audited); a paid one is answered unchanged",
    responses={
        404: {"description": "INVOICE_NOT_FOUND"},
        409: {"description": "CONFLICT: the invoice is void"},
    },
)
async def settle(
    request: Request, invoice_id: uuid.UUID, admin: Admin, session: Session, body: InvoiceSettle | None = None
) -> InvoiceDetail:
    await invoicing.settle_by_hand(
        request.app.state.sessions,
        invoice_id,
        actor=admin.actor,
        reason=body and body.reason,
        request_id=request_id(request),
    )
    return await invoice_detail(session, await get_invoice(session, invoice_id, None))
