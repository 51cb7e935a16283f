"""Starting a refund from a request (admin or vendor): the `refund-{id}` workflow reserves the amount
first, so the API can answer its refusal (409) at once; the money moves in the workflow."""

from __future__ import annotations

import uuid

from fastapi import Request
from sqlalchemy import select

from activities.contracts import RefundInput
from api.idempotency import idempotency_key
from api.starting import start_with_update
from ttelgo.audit import provenance
from ttelgo.errors import CATALOGUE, AppError
from ttelgo.models import Order, Refund
from workflows.refund import RefundProgress, RefundState, RefundWorkflow, refund_workflow_id

REFUND_IDS = uuid.UUID("0f8e2c1a-6b7d-4e5f-9a0b-1c2d3e4f5a6b")  # uuid5 namespace: caller + Idempotency-Key


async def request_refund(
    request: Request,
    *,
    scope: str,
    order_id: uuid.UUID,
    reason: str,
    actor: str,
    amount_minor: int | None = None,
    allow_used: bool = False,
    vendor_id: uuid.UUID | None = None,
) -> Refund:
    """The reserved refund's row; refusals (not refundable, too much, eSIM used) raise their 4xx."""
    async with request.app.state.sessions() as session:
        order = await session.scalar(select(Order).where(Order.id == order_id, Order.deleted_at.is_(None)))
    # Checked here, before a workflow exists: a made-up order id must not start one (the workflow checks
    # again, for the orders that change meanwhile). Another vendor's order looks exactly like a missing one.
    if order is None or (vendor_id is not None and order.vendor_id != vendor_id):
        raise AppError("ORDER_NOT_FOUND", f"no order {order_id}")
    settings = request.app.state.settings
    refund_id = uuid.uuid5(REFUND_IDS, f"{scope}:{idempotency_key(request)}")
    refund = RefundInput(
        refund_id=refund_id,
        workflow_id=refund_workflow_id(refund_id),
        order_id=order_id,
        amount_minor=amount_minor,
        reason=reason,
        actor=actor,
        allow_used=allow_used,
        vendor_id=vendor_id,
        supplier_task_queue=settings.esimgo_task_queue,
        poll_s=settings.refund_poll_seconds,
        watch_s=round(settings.refund_watch_hours * 3600),
        **provenance(),
    )
    _, progress = await start_with_update(
        request,
        RefundWorkflow.run,
        refund,
        workflow_id=refund.workflow_id,
        update=RefundWorkflow.accepted,
        from_result=RefundProgress.model_validate,
        result_type=RefundProgress,
    )
    if progress.state is RefundState.REJECTED:
        raise AppError(progress.code if progress.code in CATALOGUE else "CONFLICT", progress.detail)
    async with request.app.state.sessions() as session:
        return await session.get_one(Refund, refund_id)
