"""Liveness, readiness and metrics, for load balancers, orchestrators and Prometheus."""

from __future__ import annotations

import asyncio
import hmac
from datetime import timedelta

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from sqlalchemy import text
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest

from api.problems import RETRY_AFTER_S
from ttelgo.errors import AppError

router = APIRouter(tags=["health"])
CHECK_TIMEOUT_S = 2.0


class Liveness(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]


@router.get("/healthz", response_model=Liveness, summary="The process is up")
async def healthz() -> Liveness:
    return Liveness(status="ok")


async def _check_database(request: Request) -> None:
    async with request.app.state.engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def _check_temporal(request: Request) -> None:
    client = request.app.state.temporal
    await client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace=client.namespace), timeout=timedelta(seconds=CHECK_TIMEOUT_S)
    )


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="The database and Temporal are reachable",
    responses={503: {"model": Readiness, "description": "A dependency failed; `checks` names it"}},
)
async def readyz(request: Request) -> JSONResponse:
    checks: dict[str, str] = {}
    for name, check in (("database", _check_database), ("temporal", _check_temporal)):
        try:
            await asyncio.wait_for(check(request), CHECK_TIMEOUT_S)
            checks[name] = "ok"
        except Exception as exc:  # any failure means "not ready"; the reason goes to the caller
            checks[name] = f"failed: {type(exc).__name__}: {exc}"[:300]
    ready = all(value == "ok" for value in checks.values())
    body = Readiness(status="ready" if ready else "unavailable", checks=checks)
    if ready:
        return JSONResponse(body.model_dump())
    return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})


def _metrics_access(request: Request) -> None:
    """METRICS_TOKEN, when set, is the bearer token Prometheus scrapes with; unset, /metrics is open outside
    production and closed in it (the route labels and error rates are not for the public)."""
    settings = request.app.state.settings
    if settings.metrics_token:
        presented = request.headers.get("authorization", "").removeprefix("Bearer ").encode()
        if hmac.compare_digest(presented, settings.metrics_token.encode()):
            return
    elif not settings.is_production:
        return
    raise AppError(
        "UNAUTHENTICATED",
        "send `Authorization: Bearer <METRICS_TOKEN>`",
        headers={"WWW-Authenticate": "Bearer"},
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    dependencies=[Depends(_metrics_access)],
    responses={401: {"description": "METRICS_TOKEN is set (or this is production) and was not presented"}},
)
async def metrics(request: Request) -> Response:
    await request.app.state.business_metrics.backlog.refresh(request.app.state.sessions)
    return Response(generate_latest(request.app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST)
