"""Placing an order or a top-up once the router has priced its bundle: the customer's card order (open a
PaymentIntent, answer 201 with its client secret) and the vendor's wallet order (hold the price, optionally
wait for the eSIMs). Both start the same `order-{id}` workflow; a top-up is an order of kind TOPUP for one
bundle on an eSIM the caller already has."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import func, select
from temporalio.client import WorkflowFailureError, WorkflowHandle

from activities.contracts import OrderInput
from api.deps import VendorCaller
from api.idempotency import idempotency_key
from api.open_payments import refuse_past_open_payment_cap
from api.order_views import order_detail, order_id_for, start_and_accept
from api.problems import outage_of
from api.schemas.orders import OrderDetail
from api.schemas.payments import CardPaymentOut, CustomerOrderCreated
from ttelgo import invoicing, vendors
from ttelgo.audit import provenance
from ttelgo.catalogue.snapshot import CatalogueSnapshot, PricedBundle
from ttelgo.errors import CATALOGUE, AppError
from ttelgo.models import TERMINAL_ORDER_STATES, Channel, Order, OrderKind, User
from workflows.order import UNPAID, Acceptance, order_workflow_id

log = logging.getLogger(__name__)


def customer_scope(user: User) -> str:
    return f"user:{user.id}"


def _order_input(
    request: Request,
    order_id: uuid.UUID,
    bundle: PricedBundle,
    quantity: int,
    target_iccid: str | None,
    **by_channel: Any,
) -> OrderInput:
    """What card and wallet orders start alike; `by_channel` adds the buyer, the price and the rest."""
    settings = request.app.state.settings
    return OrderInput(
        order_id=order_id,
        workflow_id=order_workflow_id(order_id),
        bundle_code=bundle.code,
        quantity=quantity,
        currency=bundle.currency,
        wholesale_unit_minor=bundle.wholesale_minor,
        supplier_task_queue=settings.esimgo_task_queue,
        supplier_retry_budget_s=settings.supplier_retry_budget_s,
        supplier_batching=settings.esimgo_batch_orders,
        kind=OrderKind.TOPUP if target_iccid else OrderKind.ORDER,
        target_iccid=target_iccid,
        **by_channel,
        **provenance(),
    )


async def _order_detail(request: Request, order_id: uuid.UUID, path: str) -> OrderDetail:
    async with request.app.state.sessions() as session:
        return await order_detail(request, session, await session.get_one(Order, order_id), path)


def _refused(acceptance: Acceptance) -> AppError:
    code = acceptance.code if acceptance.code in CATALOGUE else "ORDER_INVALID_STATE"
    return AppError(code, acceptance.detail)


async def place_card_order(
    request: Request, user: User, bundle: PricedBundle, quantity: int, *, target_iccid: str | None = None
) -> Response:
    """201 with the order and its PaymentIntent; the price is the catalogue's retail price."""
    scope = customer_scope(user)
    order_id = order_id_for(scope, idempotency_key(request))
    unpaid = (Order.user_id == user.id, Order.status.in_(UNPAID), Order.deleted_at.is_(None))
    await refuse_past_open_payment_cap(
        request,
        scope=scope,
        open_now=select(func.count()).where(*unpaid, Order.id != order_id).scalar_subquery(),
        what="card orders",
    )
    order = _order_input(
        request,
        order_id,
        bundle,
        quantity,
        target_iccid,
        channel=Channel.B2C,
        user_id=user.id,
        unit_price_minor=bundle.price_minor,  # the catalogue's retail price, never the client's
        payment_window_s=round(request.app.state.settings.payment_window_minutes * 60),
    )
    _, acceptance = await start_and_accept(request, order)
    if not acceptance.accepted or not acceptance.payment_intent_id:
        raise _refused(acceptance)
    path = f"/api/v1/orders/{order_id}"
    detail = await _order_detail(request, order_id, path)
    created = CustomerOrderCreated(
        **detail.model_dump(),
        payment=await CardPaymentOut.of(request.app.state.stripe, acceptance.payment_intent_id),
    )
    return JSONResponse(created.model_dump(mode="json"), status_code=201, headers={"Location": path})


async def place_wallet_order(
    request: Request,
    caller: VendorCaller,
    snapshot: CatalogueSnapshot,
    bundle: PricedBundle,
    quantity: int,
    *,
    customer_reference: str | None,
    wait: int,
    target_iccid: str | None = None,
) -> Response:
    """201 once finished within `wait` seconds, else 202 (both with the order and its Location); the price
    is the vendor's (its markup or the platform default)."""
    settings = request.app.state.settings
    async with request.app.state.sessions() as session:
        vendor = await vendors.get_vendor(session, caller.vendor_id)
        await invoicing.refuse_if_overdue(session, vendor.id, settings.invoice_grace_days)
    # Deterministic from the caller's key: a retry after any failure starts (or finds) the same workflow.
    order_id = order_id_for(caller.scope, idempotency_key(request))
    order = _order_input(
        request,
        order_id,
        bundle,
        quantity,
        target_iccid,
        channel=Channel.B2B,
        vendor_id=caller.vendor_id,
        unit_price_minor=snapshot.vendor_price(bundle, vendor.markup_bps),
        customer_reference=customer_reference,
        billing_mode=vendor.billing_mode,  # what the invoice bills it by, whatever the mode later
    )
    workflow, acceptance = await start_and_accept(request, order)
    if not acceptance.accepted:
        raise _refused(acceptance)
    if wait:
        await _wait_for_end(workflow, wait)
    path = f"/api/v1/vendor/orders/{order_id}"
    detail = await _order_detail(request, order_id, path)
    done = detail.status in TERMINAL_ORDER_STATES
    return JSONResponse(
        detail.model_dump(mode="json"), status_code=201 if done else 202, headers={"Location": path}
    )


async def _wait_for_end(workflow: WorkflowHandle, seconds: int) -> None:
    """Wait up to `seconds` for the order to end. The order is accepted already, so losing Temporal
    meanwhile is no failure of this request: the stored record answers (202 + Location)."""
    try:
        await asyncio.wait_for(workflow.result(), seconds)
    except (TimeoutError, WorkflowFailureError):  # a failed run has recorded its end: the row answers
        pass
    except Exception as exc:
        if outage_of(exc) is None:
            raise
        log.warning("Temporal lost while waiting for %s: %s", workflow.id, type(exc).__name__)
