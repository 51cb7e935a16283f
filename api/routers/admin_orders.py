"""Admin: find and inspect orders (with their timeline), refund, retry a failed one, cancel an unpaid
one, and read the audit trail that every one of these actions writes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.contracts import OrderInput
from api.deps import Admin, AdminCaller, Session, request_id
from api.idempotency import idempotent
from api.order_views import cancel_unpaid, delivered, esim_out, esim_qr_response
from api.pagination import Page, Paging
from api.refunds import request_refund
from api.schemas.admin_orders import (
    AdminAction,
    AdminOrderDetail,
    AdminOrderOut,
    AuditLogOut,
    PaymentOut,
    RefundCreate,
    RefundOut,
    ResolveAction,
)
from api.timeline import database_entries, workflow_entries
from ttelgo.audit import audited, record_action
from ttelgo.errors import AppError
from ttelgo.models import AuditLog, Channel, Esim, Order, OrderKind, OrderStatus, Payment, Refund, User
from workflows.order import (
    OperatorDecision,
    OrderWorkflow,
    attempt_of,
    order_workflow_id,
    search_attributes,
)

RUN_END_WAIT = timedelta(seconds=5)  # a retry waits this long for the failed attempt's run to end

router = APIRouter(prefix="/api/v1/admin", tags=["admin: orders"])
RESOLVE_DEADLINE = timedelta(seconds=10)


def _snapshot(order: Order) -> dict[str, Any]:
    return {
        "status": order.status.value,
        "refunded_minor": order.refunded_minor,
        "workflow_id": order.workflow_id,
    }


def _audit(
    session: AsyncSession,
    request: Request,
    admin: AdminCaller,
    action: str,
    order_id: uuid.UUID,
    before: dict[str, Any],
    after: dict[str, Any],
    reason: str,
) -> None:
    record_action(
        session,
        actor=admin.actor,
        action=action,
        target_type="order",
        target_id=order_id,
        before=before,
        after=after,
        reason=reason,
        request_id=request_id(request),
    )


def _audited(
    request: Request,
    admin: AdminCaller,
    action: str,
    order_id: uuid.UUID,
    before: dict[str, Any],
    reason: str,
) -> AbstractAsyncContextManager[AuditLog]:
    return audited(
        request.app.state.sessions,
        actor=admin.actor,
        action=action,
        target_type="order",
        target_id=order_id,
        before=before,
        reason=reason,
        request_id=request_id(request),
    )


async def _order(session: Session, order_id: uuid.UUID, *, lock: bool = False) -> Order:
    query = select(Order).where(Order.id == order_id, Order.deleted_at.is_(None))
    order = await session.scalar(query.with_for_update() if lock else query)
    if order is None:
        raise AppError("ORDER_NOT_FOUND", f"no order {order_id}")
    return order


@router.get("/orders", response_model=Page[AdminOrderOut], summary="All orders, newest first, filtered")
async def list_orders(
    admin: Admin,
    session: Session,
    paging: Paging,
    status: OrderStatus | None = None,
    channel: Channel | None = None,
    kind: OrderKind | None = None,
    vendor_id: uuid.UUID | None = None,
    customer_email: Annotated[str | None, Query(max_length=320, description="exact, any case")] = None,
    created_from: Annotated[datetime | None, Query(description="inclusive, ISO 8601")] = None,
    created_to: Annotated[datetime | None, Query(description="exclusive, ISO 8601")] = None,
) -> Page[AdminOrderOut]:
    query = select(Order).where(Order.deleted_at.is_(None))
    if status:
        query = query.where(Order.status == status)
    if channel:
        query = query.where(Order.channel == channel)
    if kind:
        query = query.where(Order.kind == kind)
    if vendor_id:
        query = query.where(Order.vendor_id == vendor_id)
    if customer_email:
        users = select(User.id).where(func.lower(User.email) == customer_email.strip().lower())
        query = query.where(Order.user_id.in_(users))
    if created_from:
        query = query.where(Order.created_at >= created_from)
    if created_to:
        query = query.where(Order.created_at < created_to)
    return await paging.fetch_page(session, query.order_by(Order.created_at.desc(), Order.id), AdminOrderOut)


@router.get("/orders/{order_id}", response_model=AdminOrderDetail, summary="One order with its timeline")
async def get_order(
    request: Request, order_id: uuid.UUID, admin: Admin, session: Session
) -> AdminOrderDetail:
    order = await _order(session, order_id)
    esims = list(await session.scalars(select(Esim).where(delivered(order)).order_by(Esim.iccid)))
    payments = list(await session.scalars(select(Payment).where(Payment.order_id == order_id)))
    refunds = list(
        await session.scalars(select(Refund).where(Refund.order_id == order_id).order_by(Refund.created_at))
    )
    audit = list(
        await session.scalars(
            select(AuditLog)
            .where(AuditLog.target_type == "order", AuditLog.target_id == str(order_id))
            .order_by(AuditLog.id)
        )
    )
    email = (
        await session.scalar(select(User.email).where(User.id == order.user_id)) if order.user_id else None
    )
    timeline = database_entries(order, refunds, audit)
    for attempt in range(1, attempt_of(order.workflow_id) + 1):
        timeline += await workflow_entries(request.app.state.temporal, order_workflow_id(order.id, attempt))
    for r in refunds:
        timeline += await workflow_entries(request.app.state.temporal, r.workflow_id)
    return AdminOrderDetail(
        **AdminOrderOut.model_validate(order).model_dump(),
        customer_email=email,
        esims=[esim_out(e, f"/api/v1/admin/orders/{order.id}") for e in esims],
        payments=[PaymentOut.model_validate(p) for p in payments],
        refunds=[RefundOut.model_validate(r) for r in refunds],
        timeline=sorted(timeline, key=lambda entry: entry.at),
    )


@router.get(
    "/orders/{order_id}/esims/{iccid}/qr.png",
    response_class=Response,
    summary="QR code (PNG) of an eSIM's LPA string",
    responses={200: {"content": {"image/png": {}}}},
)
async def esim_qr(order_id: uuid.UUID, iccid: str, admin: Admin, session: Session) -> Response:
    return await esim_qr_response(session, await _order(session, order_id), iccid)


@router.post(
    "/orders/{order_id}/refund",
    status_code=201,
    response_model=RefundOut,
    summary="Refund a completed order, in full or in part (Idempotency-Key required)",
    responses={
        201: {"description": "the refund, PENDING until the money has gone back (GET /admin/refunds/{id})"},
        409: {"description": "ORDER_INVALID_STATE, REFUND_EXCEEDS_CAPTURED or ESIM_ALREADY_USED"},
    },
)
async def refund_order(request: Request, order_id: uuid.UUID, body: RefundCreate, admin: Admin) -> Response:
    async def handle() -> Response:
        async with request.app.state.sessions() as session:
            before = _snapshot(await _order(session, order_id))
        async with _audited(request, admin, "order.refund", order_id, before, body.reason) as entry:
            refund = await request_refund(
                request,
                scope=f"admin:{admin.user_id}",
                order_id=order_id,
                reason=body.reason,
                actor=admin.actor,
                amount_minor=body.amount_minor,
                allow_used=body.allow_used_esim,
            )
            if refund.used_esim_override:
                entry.action = "order.refund.used_esim_override"
            entry.after = {
                "refund_id": str(refund.id),
                "amount_minor": refund.amount_minor,
                "allow_used_esim": body.allow_used_esim,
            }
        return JSONResponse(RefundOut.model_validate(refund).model_dump(mode="json"), status_code=201)

    return await idempotent(request, f"admin:{admin.user_id}", handle)


@router.get("/refunds/{refund_id}", response_model=RefundOut, summary="One refund")
async def get_refund(refund_id: uuid.UUID, admin: Admin, session: Session) -> RefundOut:
    refund = await session.get(Refund, refund_id)
    if refund is None:
        raise AppError("NOT_FOUND", f"no refund {refund_id}")
    return RefundOut.model_validate(refund)


@router.post(
    "/orders/{order_id}/retry",
    status_code=202,
    response_model=AdminOrderOut,
    summary="Provision a FAILED wallet order again (a new attempt; the failed one charged nothing)",
    responses={409: {"description": "ORDER_INVALID_STATE: only FAILED wallet orders"}},
)
async def retry_order(
    request: Request, order_id: uuid.UUID, body: AdminAction, admin: Admin, session: Session
) -> AdminOrderOut:
    settings = request.app.state.settings
    async with session.begin():
        order = await _order(session, order_id, lock=True)  # a second retry waits, then sees CREATED
        if order.status is not OrderStatus.FAILED or order.channel is not Channel.B2B:
            raise AppError(
                "ORDER_INVALID_STATE",
                f"only a FAILED wallet order can be retried; this is {order.status.value}",
            )
        if order.supplier_order_reference:  # its failed attempt returned what it bought
            raise AppError(
                "ORDER_INVALID_STATE",
                f"this order bought supplier order {order.supplier_order_reference}, returned when it "
                "failed; place a new order instead",
            )
        if not await _ended(request, order.workflow_id):  # it may still be returning bought bundles
            raise AppError(
                "ORDER_INVALID_STATE", "the failed attempt is still finishing; retry once it has ended"
            )
        before = _snapshot(order)
        attempt = attempt_of(order.workflow_id) + 1
        retry = OrderInput(
            order_id=order.id,
            workflow_id=order_workflow_id(order.id, attempt),
            channel=order.channel,
            vendor_id=order.vendor_id,
            bundle_code=order.bundle_code,
            quantity=order.quantity,
            unit_price_minor=order.unit_price_minor,
            currency=order.currency,
            wholesale_unit_minor=(order.wholesale_cost_minor or 0) // order.quantity,
            customer_reference=order.customer_reference,
            supplier_task_queue=settings.esimgo_task_queue,
            supplier_retry_budget_s=settings.supplier_retry_budget_s,
            supplier_batching=settings.esimgo_batch_orders,
        )
        # The failed attempt holds no supplier order. A call of it still in doubt stays marked, so the new
        # attempt looks for what it may have bought before buying.
        order.workflow_id, order.status = retry.workflow_id, OrderStatus.CREATED
        order.provisioning_started_at = order.failure_code = order.failure_reason = None
        order.supplier_closed_at = None  # the new attempt buys again
        _audit(session, request, admin, "order.retry", order.id, before, _snapshot(order), body.reason)
        await session.flush()  # a row the database refuses stops the retry before the workflow starts
        try:
            await request.app.state.temporal.start_workflow(
                OrderWorkflow.run,
                retry,
                id=retry.workflow_id,
                task_queue=settings.temporal_task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                search_attributes=search_attributes(retry, OrderStatus.CREATED),
            )
        except WorkflowAlreadyStartedError:
            pass  # started by a request whose commit was lost; this one records it
        except (RPCError, RuntimeError) as exc:
            raise AppError("SERVICE_UNAVAILABLE", "Temporal is unreachable; nothing changed") from exc
    return AdminOrderOut.model_validate(order)


async def _ended(request: Request, workflow_id: str, within: timedelta = RUN_END_WAIT) -> bool:
    """Whether the order's run has ended, waiting up to `within` (a failed run's last steps follow its
    FAILED status: the vendor's webhook, returning what it bought)."""
    handle = request.app.state.temporal.get_workflow_handle(workflow_id)
    deadline = asyncio.get_running_loop().time() + within.total_seconds()
    while True:
        try:
            described = await handle.describe()
        except RPCError as exc:
            if exc.status is RPCStatusCode.NOT_FOUND:  # past retention: long ended
                return True
            raise AppError("SERVICE_UNAVAILABLE", "Temporal is unreachable; nothing changed") from exc
        except RuntimeError as exc:  # the lazy client cannot connect
            raise AppError("SERVICE_UNAVAILABLE", "Temporal is unreachable; nothing changed") from exc
        if described.status is not WorkflowExecutionStatus.RUNNING:
            return True
        if asyncio.get_running_loop().time() >= deadline:
            return False
        await asyncio.sleep(0.2)


@router.post(
    "/orders/{order_id}/cancel",
    response_model=AdminOrderOut,
    summary="Cancel an unpaid card order (its PaymentIntent is canceled too)",
    responses={409: {"description": "ORDER_INVALID_STATE: paid or finished"}},
)
async def cancel_order(
    request: Request, order_id: uuid.UUID, body: AdminAction, admin: Admin, session: Session
) -> AdminOrderOut:
    order = await _order(session, order_id)
    await _act_through_workflow(
        session, request, admin, order, "order.cancel", body.reason, lambda: cancel_unpaid(request, order)
    )
    return AdminOrderOut.model_validate(order)


@router.post(
    "/orders/{order_id}/resolve",
    response_model=AdminOrderOut,
    status_code=202,
    summary="Decide for an order stopped in NEEDS_ATTENTION: provision it again, or give it up",
    responses={409: {"description": "ORDER_INVALID_STATE: the order is not waiting for an operator"}},
)
async def resolve_order(
    request: Request, order_id: uuid.UUID, body: ResolveAction, admin: Admin, session: Session
) -> AdminOrderOut:
    order = await _order(session, order_id)
    if order.status is not OrderStatus.NEEDS_ATTENTION:
        raise AppError("ORDER_INVALID_STATE", f"a {order.status.value} order is not waiting for an operator")
    decision = OperatorDecision(action=body.action, actor=admin.actor, reason=body.reason)
    action = f"order.resolve.{body.action.value}"
    await _act_through_workflow(
        session, request, admin, order, action, body.reason, lambda: _resolve(request, order, decision)
    )
    return AdminOrderOut.model_validate(order)


async def _resolve(request: Request, order: Order, decision: OperatorDecision) -> None:
    handle = request.app.state.temporal.get_workflow_handle(order.workflow_id)
    try:
        await handle.execute_update(OrderWorkflow.resolve, decision, rpc_timeout=RESOLVE_DEADLINE)
    except WorkflowUpdateFailedError as exc:  # the validator refused: another operator was first
        raise AppError("ORDER_INVALID_STATE", "the order is no longer waiting for an operator") from exc
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:  # its workflow has ended: reconciliation reports it
            raise AppError(
                "ORDER_INVALID_STATE",
                f"the order's workflow {order.workflow_id} has ended; it can no longer be resolved here",
            ) from exc
        raise


async def _act_through_workflow(
    session: AsyncSession,
    request: Request,
    admin: AdminCaller,
    order: Order,
    action: str,
    reason: str,
    act: Callable[[], Awaitable[None]],
) -> None:
    """An admin action carried out by the order's workflow, audited with the order as it then stands
    (the workflow, not this request, writes the order; the order is not held locked while it works)."""
    before = _snapshot(order)
    await session.commit()
    async with _audited(request, admin, action, order.id, before, reason) as entry:
        await act()
        async with session.begin():
            await session.refresh(order)
        entry.after = _snapshot(order)


@router.get("/audit-logs", response_model=Page[AuditLogOut], summary="The audit trail, newest first")
async def audit_logs(
    admin: Admin,
    session: Session,
    paging: Paging,
    target_type: str | None = None,
    target_id: str | None = None,
    actor_id: str | None = None,
    action: str | None = None,
) -> Page[AuditLogOut]:
    query = select(AuditLog)
    for column, value in (
        (AuditLog.target_type, target_type),
        (AuditLog.target_id, target_id),
        (AuditLog.actor_id, actor_id),
        (AuditLog.action, action),
    ):
        if value is not None:
            query = query.where(column == value)
    return await paging.fetch_page(session, query.order_by(AuditLog.id.desc()), AuditLogOut)
