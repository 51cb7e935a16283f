"""Vendor wallet top-ups by card: a PaymentIntent to confirm with Stripe.js; the `topup-{id}` workflow
credits the wallet once Stripe reports the payment, exactly once."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import func, select
from temporalio.service import RPCError

from activities.contracts import TopupInput
from api.deps import AnyVendor, Session, VendorCaller, vendor_role
from api.idempotency import idempotency_key, idempotent
from api.open_payments import refuse_past_open_payment_cap
from api.pagination import Page, Paging
from api.schemas.payments import CardPaymentOut, TopupCreate, TopupDetail, TopupOut
from api.starting import start_with_update
from ttelgo import vendors
from ttelgo.errors import AppError
from ttelgo.models import Payment, PaymentPurpose, PaymentStatus, VendorUserRole
from workflows.topup import TopupProgress, TopupStatus, TopupWorkflow, topup_workflow_id

router = APIRouter(prefix="/api/v1/vendor/wallet", tags=["vendor: account"])
Payer = Annotated[VendorCaller, Depends(vendor_role(VendorUserRole.DEVELOPER))]
TOPUP_IDS = uuid.UUID("5b0c7e8e-4f0a-4a4e-8d4b-6f1f2a3c9d21")  # uuid5 namespace: caller + Idempotency-Key
PAYABLE = (TopupStatus.PAYMENT_PENDING, TopupStatus.PAYMENT_FAILED)
# A declined intent can still be paid inside its window; the window's end cancels it.
OPEN = (PaymentStatus.REQUIRES_PAYMENT, PaymentStatus.PROCESSING, PaymentStatus.FAILED)


async def _own_topup(session: Session, caller: VendorCaller, topup_id: uuid.UUID) -> Payment:
    payment = await session.scalar(
        select(Payment).where(
            Payment.id == topup_id,
            Payment.vendor_id == caller.vendor_id,
            Payment.purpose == PaymentPurpose.TOPUP,
        )
    )
    if payment is None:
        raise AppError("PAYMENT_NOT_FOUND", f"no top-up {topup_id}")
    return payment


async def _detail(request: Request, payment: Payment, progress: TopupProgress | None) -> TopupDetail:
    card = None
    if progress and progress.status in PAYABLE:
        card = await CardPaymentOut.of(request.app.state.stripe, payment.provider_payment_id)
    return TopupDetail(
        **TopupOut.model_validate(payment).model_dump(),
        state=progress.status if progress else None,
        payment=card,
    )


@router.post(
    "/topup/intents",
    status_code=201,
    response_model=TopupDetail,
    summary="Top up the wallet by card: returns the PaymentIntent to confirm (Idempotency-Key required)",
    responses={422: {"description": "TOPUP_AMOUNT_OUT_OF_RANGE, or not the wallet's currency"}},
)
async def create_topup(request: Request, body: TopupCreate, caller: Payer) -> Response:
    settings = request.app.state.settings
    if not settings.topup_min_minor <= body.amount_minor <= settings.topup_max_minor:
        raise AppError(
            "TOPUP_AMOUNT_OUT_OF_RANGE",
            f"a top-up is between {settings.topup_min_minor} and {settings.topup_max_minor} minor units",
        )

    async def handle() -> Response:
        async with request.app.state.sessions() as session:
            vendor = await vendors.get_vendor(session, caller.vendor_id)
        if body.currency != vendor.currency:
            raise AppError("VALIDATION_ERROR", f"the wallet is in {vendor.currency}, not {body.currency}")
        topup_id = uuid.uuid5(TOPUP_IDS, f"{caller.scope}:{idempotency_key(request)}")
        open_topups = (
            Payment.vendor_id == caller.vendor_id,
            Payment.purpose == PaymentPurpose.TOPUP,
            Payment.status.in_(OPEN),
            Payment.created_at > func.now() - timedelta(minutes=settings.payment_window_minutes),
            Payment.id != topup_id,
        )
        await refuse_past_open_payment_cap(
            request,
            scope=caller.scope,
            open_now=select(func.count()).where(*open_topups).scalar_subquery(),
            what="card top-ups",
        )
        topup = TopupInput(
            topup_id=topup_id,
            workflow_id=topup_workflow_id(topup_id),
            vendor_id=caller.vendor_id,
            amount_minor=body.amount_minor,
            currency=body.currency,
            payment_window_s=round(settings.payment_window_minutes * 60),
        )
        _, progress = await start_with_update(
            request,
            TopupWorkflow.run,
            topup,
            workflow_id=topup.workflow_id,
            update=TopupWorkflow.opened,
            from_result=TopupProgress.model_validate,
            result_type=TopupProgress,
        )
        if progress.status is TopupStatus.FAILED and progress.payment_intent_id is None:
            raise AppError("PAYMENT_FAILED", progress.failure_reason)
        async with request.app.state.sessions() as session:
            detail = await _detail(request, await _own_topup(session, caller, topup_id), progress)
        return JSONResponse(
            detail.model_dump(mode="json"),
            status_code=201,
            headers={"Location": f"/api/v1/vendor/wallet/topups/{topup_id}"},
        )

    return await idempotent(request, caller.scope, handle)


@router.get("/topups", response_model=Page[TopupOut], summary="My card top-ups, newest first")
async def list_topups(caller: AnyVendor, session: Session, paging: Paging) -> Page[TopupOut]:
    query = (
        select(Payment)
        .where(Payment.vendor_id == caller.vendor_id, Payment.purpose == PaymentPurpose.TOPUP)
        .order_by(Payment.created_at.desc(), Payment.id)
    )
    return await paging.fetch_page(session, query, TopupOut)


@router.get("/topups/{topup_id}", response_model=TopupDetail, summary="One top-up, with its workflow state")
async def get_topup(
    request: Request, topup_id: uuid.UUID, caller: AnyVendor, session: Session
) -> TopupDetail:
    payment = await _own_topup(session, caller, topup_id)
    handle = request.app.state.temporal.get_workflow_handle(payment.workflow_id)
    try:
        progress: TopupProgress | None = await handle.query(TopupWorkflow.status)
    except (RPCError, RuntimeError):
        progress = None  # Temporal unreachable: the payment record alone still answers
    # Read again after the query: the workflow writes the row before it moves on, so both agree.
    await session.refresh(payment)
    return await _detail(request, payment, progress)
