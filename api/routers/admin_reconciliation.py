"""Admin: start a reconciliation run now (the `reconciliation` Schedule runs it too), and read the runs and
what each found and did."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import select
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.contracts import ReconciliationInput
from api.deps import Admin, Session, request_id
from api.idempotency import idempotency_key, idempotent
from api.pagination import Page, Paging
from api.problems import RETRY_AFTER_S
from api.schemas.reconciliation import (
    FindingOut,
    ReconciliationRunAccepted,
    ReconciliationRunCreate,
    ReconciliationRunDetail,
    ReconciliationRunOut,
)
from ttelgo.audit import record_action
from ttelgo.errors import AppError
from ttelgo.models import ReconciliationFinding, ReconciliationRun, ReconciliationStatus
from workflows.reconciliation import ReconciliationWorkflow, reconciliation_workflow_id

router = APIRouter(prefix="/api/v1/admin/reconciliation", tags=["admin: reconciliation"])

RUN_IDS = uuid.UUID("5c1d7e0a-92b4-4f63-8a1e-3b6f0c2d9e47")  # uuid5 namespace: caller + Idempotency-Key


def _temporal_unavailable(detail: str) -> AppError:
    """503 problem+json that says when to come back (the same request, the same Idempotency-Key)."""
    return AppError(
        "SERVICE_UNAVAILABLE",
        detail,
        extra={"dependency": "Temporal"},
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def _location(run_id: uuid.UUID) -> str:
    return f"/api/v1/admin/reconciliation/runs/{run_id}"


@router.post(
    "/runs",
    status_code=202,
    response_model=ReconciliationRunAccepted,
    summary="Run reconciliation now (Idempotency-Key required); poll the Location for its findings",
)
async def start_run(
    request: Request,
    admin: Admin,
    body: Annotated[ReconciliationRunCreate | None, Body()] = None,
) -> Response:
    body = body or ReconciliationRunCreate()
    scope = f"admin:{admin.user_id}"

    async def handle() -> Response:
        settings = request.app.state.settings
        # Derived from the caller and the key: a retry after a crash starts (and finds) the same run.
        run_id = uuid.uuid5(RUN_IDS, f"{scope}:{idempotency_key(request)}")
        workflow_id = reconciliation_workflow_id(run_id)
        window = body.window_minutes or settings.reconciliation_window_minutes
        run = ReconciliationInput(
            run_id=run_id,
            window_minutes=window,
            grace_minutes=settings.reconciliation_grace_minutes,
            supplier_task_queue=settings.esimgo_task_queue,
            requested_by=admin.actor,
        )
        try:
            await request.app.state.temporal.start_workflow(
                ReconciliationWorkflow.run,
                run,
                id=workflow_id,
                task_queue=settings.temporal_task_queue,
                # One run per key, ever: a retry after the run closed (its answer lost, or the idempotency
                # record gone) finds that run instead of starting it again.
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            )
        except WorkflowAlreadyStartedError:
            pass  # started by a request whose answer was lost
        except (RPCError, RuntimeError) as exc:
            raise _temporal_unavailable("Temporal is unreachable; no run was started") from exc
        async with request.app.state.sessions() as session, session.begin():
            record_action(
                session,
                actor=admin.actor,
                action="reconciliation.run",
                target_type="reconciliation_run",
                target_id=run_id,
                after={"window_minutes": window, "workflow_id": workflow_id},
                reason=body.reason,
                request_id=request_id(request),
            )
        accepted = ReconciliationRunAccepted(
            id=run_id, status=ReconciliationStatus.RUNNING, workflow_id=workflow_id
        )
        return JSONResponse(
            accepted.model_dump(mode="json"), status_code=202, headers={"Location": _location(run_id)}
        )

    return await idempotent(request, scope, handle)


@router.get("/runs", response_model=Page[ReconciliationRunOut], summary="Reconciliation runs, newest first")
async def list_runs(
    admin: Admin, session: Session, paging: Paging, status: ReconciliationStatus | None = None
) -> Page[ReconciliationRunOut]:
    query = select(ReconciliationRun)
    if status:
        query = query.where(ReconciliationRun.status == status)
    order = (ReconciliationRun.created_at.desc(), ReconciliationRun.id)
    return await paging.fetch_page(session, query.order_by(*order), ReconciliationRunOut)


@router.get(
    "/runs/{run_id}", response_model=ReconciliationRunDetail, summary="One run: its status and findings"
)
async def get_run(
    request: Request, run_id: uuid.UUID, admin: Admin, session: Session
) -> ReconciliationRunDetail:
    run = await session.get(ReconciliationRun, run_id)
    if run is None:
        # Accepted, but its workflow has not recorded it yet.
        workflow_id = reconciliation_workflow_id(run_id)
        try:
            await request.app.state.temporal.get_workflow_handle(workflow_id).describe()
        except RPCError as exc:
            if exc.status is RPCStatusCode.NOT_FOUND:
                raise AppError("NOT_FOUND", f"no reconciliation run {run_id}") from exc
            raise _temporal_unavailable("Temporal is unreachable") from exc
        return ReconciliationRunDetail(
            id=run_id, workflow_id=workflow_id, status=ReconciliationStatus.RUNNING
        )
    findings = await session.scalars(
        select(ReconciliationFinding)
        .where(ReconciliationFinding.run_id == run_id)
        .order_by(ReconciliationFinding.id)
    )
    return ReconciliationRunDetail(
        **ReconciliationRunOut.model_validate(run).model_dump(),
        findings=[FindingOut.model_validate(f) for f in findings],
    )
