"""What the vendor and customer order APIs share: starting an order workflow, the order detail with live
progress, and an eSIM's QR code. Each router keeps its own rule for whose orders a caller may see."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import timedelta

from fastapi import Request, Response
from sqlalchemy import ColumnElement, and_, literal, select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.api.workflow.v1 import PendingActivityInfo
from temporalio.client import RPCTimeoutOrCancelledError, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.contracts import OrderInput, batcher_workflow_id
from api.problems import Outage, outage_of, unavailable
from api.schemas.orders import EsimOut, LiveProgress, OrderDetail, OrderOut
from api.starting import start_with_update
from ttelgo.errors import AppError
from ttelgo.esim_bundles import esims_of
from ttelgo.models import TERMINAL_ORDER_STATES, Esim, Order, OrderKind, OrderStatus
from ttelgo.qr import lpa, qr_png
from workflows.order import UNPAID, Acceptance, OrderProgress, OrderWorkflow, search_attributes

# uuid5 namespace: an order's id comes from its caller and Idempotency-Key, so a retry finds the same order.
ORDER_IDS = uuid.UUID("8a4f6f0e-3c1d-4b53-9a52-2f0c8f6b1e10")


# Live progress is a bonus on top of the stored record: asked with a short deadline (a query needs a worker
# to answer it), and left out when Temporal or the worker cannot answer in time.
LIVE_PROGRESS_DEADLINE = timedelta(seconds=3)
CANCEL_DEADLINE = timedelta(seconds=10)  # the cancel update needs a worker too
TOPPED_UP = (OrderStatus.COMPLETED, OrderStatus.PARTIALLY_REFUNDED)  # a top-up's bundle is on its eSIM


def order_id_for(scope: str, idempotency_key: str) -> uuid.UUID:
    return uuid.uuid5(ORDER_IDS, f"{scope}:{idempotency_key}")


async def live_progress(request: Request, order: Order) -> LiveProgress | None:
    if order.status in TERMINAL_ORDER_STATES:
        return None
    handle = request.app.state.temporal.get_workflow_handle(order.workflow_id)
    deadline = LIVE_PROGRESS_DEADLINE
    try:
        # One deadline for both calls: the SDK retries an unreachable server by itself for longer.
        async with asyncio.timeout(deadline.total_seconds()):
            progress = await handle.query(OrderWorkflow.status, rpc_timeout=deadline)
            pending = (await handle.describe(rpc_timeout=deadline)).raw_description.pending_activities
            if not pending and order.status is OrderStatus.PROVISIONING:
                pending = await _batch_calls(request, deadline)
    except (RPCError, RPCTimeoutOrCancelledError, TimeoutError, RuntimeError):  # RuntimeError: no connection
        return None  # the record alone is still a true answer
    running = max(pending, key=lambda p: p.attempt) if pending else None
    last_error = running.last_failure.message if running and running.HasField("last_failure") else None
    return LiveProgress(
        step=progress.step, attempts=running.attempt if running else None, last_error=last_error
    )


async def _batch_calls(request: Request, deadline: timedelta) -> Sequence[PendingActivityInfo]:
    """An order bought with others waits on its supplier batcher's calls: their attempts and last error are
    the order's (the calls in flight meet the same supplier)."""
    batcher = batcher_workflow_id(request.app.state.settings.esimgo_task_queue)
    try:
        described = await request.app.state.temporal.get_workflow_handle(batcher).describe(
            rpc_timeout=deadline
        )
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:
            return []
        raise
    return described.raw_description.pending_activities


def esim_out(esim: Esim, base_path: str) -> EsimOut:
    """`base_path` is the order's own URL, under which the eSIM's QR code lives."""
    return EsimOut(
        iccid=esim.iccid,
        smdp_address=esim.smdp_address,
        matching_id=esim.matching_id,
        lpa=lpa(esim.smdp_address, esim.matching_id),
        qr_code_url=f"{base_path}/esims/{esim.iccid}/qr.png",
    )


def delivered(order: Order) -> ColumnElement[bool]:
    """The eSIMs an order delivered: its own, or, for a top-up that completed, the eSIM it topped up."""
    return and_(esims_of(order), literal(order.kind is not OrderKind.TOPUP or order.status in TOPPED_UP))


async def order_detail(request: Request, session: AsyncSession, order: Order, base_path: str) -> OrderDetail:
    esims = await session.scalars(select(Esim).where(delivered(order)).order_by(Esim.iccid))
    return OrderDetail(
        **OrderOut.model_validate(order).model_dump(),
        progress=await live_progress(request, order),
        esims=[esim_out(e, base_path) for e in esims],
    )


async def esim_qr_response(session: AsyncSession, order: Order, iccid: str) -> Response:
    esim = await session.scalar(select(Esim).where(delivered(order), Esim.iccid == iccid))
    if esim is None:
        raise AppError("ESIM_NOT_FOUND", f"no eSIM {iccid} in order {order.id}")
    png = qr_png(lpa(esim.smdp_address, esim.matching_id))
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=86400"})


async def start_and_accept(request: Request, order: OrderInput) -> tuple[WorkflowHandle, Acceptance]:
    """Start the order workflow and wait for its money check, atomically."""
    return await start_with_update(
        request,
        OrderWorkflow.run,
        order,
        workflow_id=order.workflow_id,
        update=OrderWorkflow.accepted,
        from_result=lambda progress: OrderProgress.model_validate(progress).acceptance(),
        result_type=OrderProgress,
        search_attributes=search_attributes(order, OrderStatus.CREATED),
    )


async def cancel_unpaid(request: Request, order: Order) -> None:
    """Cancels an unpaid card order through its workflow (which cancels the PaymentIntent); 409 once paid."""
    if order.status not in UNPAID:
        raise AppError("ORDER_INVALID_STATE", f"a {order.status.value} order cannot be canceled")
    handle = request.app.state.temporal.get_workflow_handle(order.workflow_id)
    try:
        progress = await handle.execute_update(OrderWorkflow.cancel, rpc_timeout=CANCEL_DEADLINE)
    except WorkflowUpdateFailedError as exc:  # the validator refused: no longer unpaid
        cause = exc.cause
        detail = cause.message if isinstance(cause, ApplicationError) else "the order cannot be canceled"
        raise AppError("ORDER_INVALID_STATE", detail) from exc
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:  # the workflow has ended (or is gone): no one to cancel
            raise AppError("ORDER_INVALID_STATE", await _workflow_gone(handle, order)) from exc
        outage = outage_of(exc) or Outage("SERVICE_UNAVAILABLE", "Temporal", 2)
        raise unavailable(outage, "the order's workflow did not answer; retry shortly") from exc
    except (RPCTimeoutOrCancelledError, RuntimeError) as exc:
        outage = outage_of(exc)
        if outage is None:
            raise
        raise unavailable(outage, "the order's workflow did not answer; retry shortly") from exc
    if progress.status is not OrderStatus.CANCELED:  # something else settled it first (paid, expired)
        raise AppError("ORDER_INVALID_STATE", f"the order is {progress.status.value}, not canceled")


async def _workflow_gone(handle: WorkflowHandle, order: Order) -> str:
    """Why an unpaid order cannot be canceled: its workflow is closed, so nothing will ever move it."""
    try:
        closed = (await handle.describe(rpc_timeout=LIVE_PROGRESS_DEADLINE)).status
        ended = f"has ended ({closed.name})" if closed else "has ended"
    except RPCError:
        ended = "no longer exists"
    return (
        f"the order is {order.status.value} but its workflow {order.workflow_id} {ended}; "
        "it cannot be canceled here: an operator must settle it"
    )
