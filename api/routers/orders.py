"""Customer API: buy a bundle by card, follow my orders, fetch my eSIMs; pay or cancel while unpaid."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy import select

from api.deps import Session, require_user
from api.idempotency import idempotent
from api.order_views import cancel_unpaid, esim_qr_response, order_detail
from api.pagination import Page, Paging
from api.placing import customer_scope, place_card_order
from api.schemas.orders import EsimOut, OrderDetail, OrderOut
from api.schemas.payments import (
    CardPaymentOut,
    CustomerOrderCreate,
    CustomerOrderCreated,
    OrderPaymentRequest,
)
from ttelgo.errors import AppError
from ttelgo.models import Order, OrderKind, OrderStatus, Payment, User
from workflows.order import UNPAID

router = APIRouter(prefix="/api/v1", tags=["customer: orders"])
Customer = Annotated[User, Depends(require_user)]


async def _my_order(session: Session, user: User, order_id: uuid.UUID) -> Order:
    order = await session.scalar(
        select(Order).where(Order.id == order_id, Order.user_id == user.id, Order.deleted_at.is_(None))
    )
    if order is None:  # someone else's order looks exactly like a missing one
        raise AppError("ORDER_NOT_FOUND", f"no order {order_id}")
    return order


async def _detail(request: Request, session: Session, order: Order) -> OrderDetail:
    return await order_detail(request, session, order, f"/api/v1/orders/{order.id}")


@router.post(
    "/orders",
    status_code=201,
    response_model=CustomerOrderCreated,
    summary="Order a bundle and get the PaymentIntent to pay it (Idempotency-Key required)",
    responses={422: {"description": "BUNDLE_UNKNOWN or a quantity outside 1–5"}},
)
async def create_order(request: Request, body: CustomerOrderCreate, user: Customer) -> Response:
    async def handle() -> Response:
        snapshot = await request.app.state.catalogue_cache.get()
        bundle = snapshot.by_code.get(body.bundle_code)
        if bundle is None:
            raise AppError("BUNDLE_UNKNOWN", f"no bundle named {body.bundle_code!r} is on sale")
        return await place_card_order(request, user, bundle, body.quantity)

    return await idempotent(request, customer_scope(user), handle)


@router.get("/orders", response_model=Page[OrderOut], summary="My orders, newest first")
async def list_orders(
    user: Customer,
    session: Session,
    paging: Paging,
    status: OrderStatus | None = None,
    kind: OrderKind | None = None,
) -> Page[OrderOut]:
    query = select(Order).where(Order.user_id == user.id, Order.deleted_at.is_(None))
    if status:
        query = query.where(Order.status == status)
    if kind:
        query = query.where(Order.kind == kind)
    return await paging.fetch_page(session, query.order_by(Order.created_at.desc(), Order.id), OrderOut)


@router.get("/orders/{order_id}", response_model=OrderDetail, summary="One of my orders")
async def get_order(request: Request, order_id: uuid.UUID, user: Customer, session: Session) -> OrderDetail:
    return await _detail(request, session, await _my_order(session, user, order_id))


@router.get("/orders/{order_id}/esims", response_model=list[EsimOut], summary="My order's eSIMs")
async def order_esims(
    request: Request, order_id: uuid.UUID, user: Customer, session: Session
) -> list[EsimOut]:
    return (await _detail(request, session, await _my_order(session, user, order_id))).esims


@router.get(
    "/orders/{order_id}/esims/{iccid}/qr.png",
    response_class=Response,
    summary="QR code (PNG) of the LPA string",
    responses={200: {"content": {"image/png": {}}}},
)
async def esim_qr(order_id: uuid.UUID, iccid: str, user: Customer, session: Session) -> Response:
    return await esim_qr_response(session, await _my_order(session, user, order_id), iccid)


@router.post(
    "/orders/{order_id}/cancel",
    response_model=OrderDetail,
    summary="Cancel my order while it is unpaid; its PaymentIntent is canceled too",
    responses={409: {"description": "ORDER_INVALID_STATE: paid (or finished) already"}},
)
async def cancel_order(
    request: Request, order_id: uuid.UUID, user: Customer, session: Session
) -> OrderDetail:
    order = await _my_order(session, user, order_id)
    await cancel_unpaid(request, order)
    await session.refresh(order)
    return await _detail(request, session, order)


@router.post(
    "/payments/intents/orders",
    response_model=CardPaymentOut,
    summary="The PaymentIntent of my unpaid order (the amount is the order's; none is taken)",
    responses={409: {"description": "ORDER_INVALID_STATE: the order is not waiting for payment"}},
)
async def order_payment_intent(
    request: Request, body: OrderPaymentRequest, user: Customer, session: Session
) -> CardPaymentOut:
    order = await _my_order(session, user, body.order_id)
    payment = await session.scalar(select(Payment).where(Payment.order_id == order.id))
    if order.status not in UNPAID or payment is None:
        raise AppError(
            "ORDER_INVALID_STATE", f"order {order.id} is {order.status.value}, not awaiting payment"
        )
    return await CardPaymentOut.of(request.app.state.stripe, payment.provider_payment_id)
