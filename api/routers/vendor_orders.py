"""Vendor API: buy eSIMs from the wallet, follow orders, fetch install details and QR codes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import select

from api.deps import AnyVendor, Session, VendorCaller, request_id, vendor_role
from api.idempotency import idempotent
from api.order_views import esim_qr_response, order_detail
from api.pagination import Page, Paging
from api.placing import place_wallet_order
from api.refunds import request_refund
from api.schemas.admin_orders import RefundOut, VendorRefundCreate
from api.schemas.orders import EsimOut, OrderDetail, OrderOut, VendorOrderCreate
from ttelgo.audit import audited
from ttelgo.errors import AppError
from ttelgo.models import Order, OrderKind, OrderStatus, VendorUserRole

router = APIRouter(prefix="/api/v1/vendor/orders", tags=["vendor: orders"])
Buyer = Annotated[VendorCaller, Depends(vendor_role(VendorUserRole.DEVELOPER))]


async def _own_order(session: Session, caller: VendorCaller, order_id: uuid.UUID) -> Order:
    order = await session.scalar(
        select(Order).where(
            Order.id == order_id, Order.vendor_id == caller.vendor_id, Order.deleted_at.is_(None)
        )
    )
    if order is None:  # another vendor's order looks exactly like a missing one
        raise AppError("ORDER_NOT_FOUND", f"no order {order_id}")
    return order


async def _detail(request: Request, session: Session, order: Order) -> OrderDetail:
    return await order_detail(request, session, order, f"/api/v1/vendor/orders/{order.id}")


@router.post(
    "",
    status_code=201,
    response_model=OrderDetail,
    summary="Buy eSIMs from the wallet (Idempotency-Key required)",
    responses={
        202: {"model": OrderDetail, "description": "accepted, still provisioning: poll the Location"},
        402: {
            "description": "INSUFFICIENT_FUNDS or CREDIT_LIMIT_EXCEEDED (nothing was held), or "
            "INVOICE_OVERDUE: orders are suspended until the overdue invoice is settled"
        },
        422: {"description": "BUNDLE_UNKNOWN or a quantity outside 1–10"},
        503: {
            "description": "SERVICE_UNAVAILABLE + Retry-After: a dependency is down, or the order is "
            "started but not confirmed yet; retry with the same Idempotency-Key"
        },
    },
)
async def create_order(
    request: Request,
    body: VendorOrderCreate,
    caller: Buyer,
    wait: Annotated[
        int, Query(ge=0, le=30, description="seconds to wait for the eSIMs before answering 202")
    ] = 0,
) -> Response:
    async def handle() -> Response:
        snapshot = await request.app.state.catalogue_cache.get()
        bundle = snapshot.by_code.get(body.bundle_code)
        if bundle is None:
            raise AppError("BUNDLE_UNKNOWN", f"no bundle named {body.bundle_code!r} is on sale")
        return await place_wallet_order(
            request,
            caller,
            snapshot,
            bundle,
            body.quantity,
            customer_reference=body.customer_reference,
            wait=wait,
        )

    return await idempotent(request, caller.scope, handle)


@router.get("", response_model=Page[OrderOut], summary="My orders, newest first")
async def list_orders(
    caller: AnyVendor,
    session: Session,
    paging: Paging,
    status: OrderStatus | None = None,
    created_from: Annotated[datetime | None, Query(description="inclusive, ISO 8601")] = None,
    created_to: Annotated[datetime | None, Query(description="exclusive, ISO 8601")] = None,
    kind: OrderKind | None = None,
) -> Page[OrderOut]:
    query = select(Order).where(Order.vendor_id == caller.vendor_id, Order.deleted_at.is_(None))
    if status:
        query = query.where(Order.status == status)
    if kind:
        query = query.where(Order.kind == kind)
    if created_from:
        query = query.where(Order.created_at >= created_from)
    if created_to:
        query = query.where(Order.created_at < created_to)
    return await paging.fetch_page(session, query.order_by(Order.created_at.desc(), Order.id), OrderOut)


@router.get("/{order_id}", response_model=OrderDetail, summary="One order: live progress while it runs")
async def get_order(
    request: Request, order_id: uuid.UUID, caller: AnyVendor, session: Session
) -> OrderDetail:
    return await _detail(request, session, await _own_order(session, caller, order_id))


@router.get("/{order_id}/esims", response_model=list[EsimOut], summary="Install details of the order's eSIMs")
async def order_esims(
    request: Request, order_id: uuid.UUID, caller: AnyVendor, session: Session
) -> list[EsimOut]:
    return (await _detail(request, session, await _own_order(session, caller, order_id))).esims


@router.get(
    "/{order_id}/esims/{iccid}/qr.png",
    response_class=Response,
    summary="QR code (PNG) of the LPA string",
    responses={200: {"content": {"image/png": {}}}},
)
async def esim_qr(order_id: uuid.UUID, iccid: str, caller: AnyVendor, session: Session) -> Response:
    return await esim_qr_response(session, await _own_order(session, caller, order_id), iccid)


@router.post(
    "/{order_id}/refund",
    status_code=201,
    response_model=RefundOut,
    summary="Refund an order whose eSIMs are unused: revoked at the supplier, wallet credited once",
    responses={409: {"description": "ORDER_INVALID_STATE, REFUND_EXCEEDS_CAPTURED or ESIM_ALREADY_USED"}},
)
async def refund_order(
    request: Request, order_id: uuid.UUID, body: VendorRefundCreate, caller: Buyer
) -> Response:
    async def handle() -> Response:
        async with audited(
            request.app.state.sessions,
            actor=caller.actor,
            action="order.refund",
            target_type="order",
            target_id=order_id,
            reason=body.reason,
            request_id=request_id(request),
        ) as entry:
            refund = await request_refund(
                request,
                scope=caller.scope,
                order_id=order_id,
                reason=body.reason,
                actor=caller.actor,
                vendor_id=caller.vendor_id,  # another vendor's order is refused as not found
            )
            entry.after = {"refund_id": str(refund.id), "amount_minor": refund.amount_minor}
        return JSONResponse(RefundOut.model_validate(refund).model_dump(mode="json"), status_code=201)

    return await idempotent(request, caller.scope, handle)
