"""Inbound webhooks: verify on the raw body, record each event once, hand it to a workflow, answer fast."""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import Update, bindparam, select, update
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.contracts import UsageEvent
from api.business_metrics import WebhookOutcome
from ttelgo.db import autocommit
from ttelgo.errors import AppError
from ttelgo.esimgo.callbacks import InvalidCallback, parse_usage_callback, verify_signature
from ttelgo.models import Payment, Refund, WebhookEvent, WebhookEventStatus
from ttelgo.payments import PaymentEvent, StripeEventError, parse_event, storable, verify_event
from ttelgo.payments.webhook_rows import NewEvent, mark_delivered, record
from workflows.esim_usage import EsimUsageWorkflow, usage_workflow_id

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])
log = logging.getLogger(__name__)
HAND_ON_GRACE = timedelta(seconds=30)
NOT_HANDED_ON = "not handed on yet: "  # the error of a RECEIVED row whose delivery found Temporal down
PAYMENT_SIGNAL = "payment_event"  # the order and top-up workflows both take Stripe events by this name


# Built once: constructing and coercing a statement per event cost more CPU than executing it. The row's
# values are bound at execution.
_MARK = (
    update(WebhookEvent)
    .where(WebhookEvent.provider == bindparam("p"), WebhookEvent.event_id == bindparam("e"))
    .values(status=bindparam("status"), error=bindparam("error"), processed_at=bindparam("processed_at"))
)
# A run Temporal started although the call failed may have finished the row already: it stays finished.
_MARK_UNFINISHED = _MARK.where(WebhookEvent.status == WebhookEventStatus.RECEIVED)


class Recorded(Enum):
    HAND_ON = (
        "hand on"  # stored now, or left by an earlier delivery that failed or stalled: this one hands it on
    )
    IGNORED = "ignored"  # stored now, as IGNORED: nothing acts on it
    DUPLICATE = "duplicate"  # stored before: that delivery handles it


class WebhookAck(BaseModel):
    status: str  # accepted | duplicate | ignored
    event_id: str


async def _record_once(
    request: Request,
    provider: str,
    event_id: str,
    event_type: str,
    payload: dict[str, Any],
    target_workflow_id: str | None,
    *,
    ignored_because: str | None = None,
) -> Recorded:
    """Stores the event unless it is stored already, and says whether it still has to be handed on.

    One statement, committed on its own (shared with the events recorded at the same time): the unique
    (provider, event_id) keeps it to one row however many deliveries race. An event already known to be
    ignored is stored as IGNORED at once.
    """
    engine = request.app.state.engine
    event = NewEvent(provider, event_id, event_type, payload, target_workflow_id, ignored_because)
    if await record(engine, event):
        return Recorded.IGNORED if ignored_because else Recorded.HAND_ON
    async with autocommit(engine) as connection:
        earlier = (
            await connection.execute(
                select(WebhookEvent.status, WebhookEvent.created_at, WebhookEvent.error).where(
                    WebhookEvent.provider == provider, WebhookEvent.event_id == event_id
                )
            )
        ).one()
    if earlier.status is not WebhookEventStatus.RECEIVED:
        return Recorded.DUPLICATE
    # Still RECEIVED: its delivery was answered 503 (Temporal was down), or it stopped before handing it on
    # long ago; this one hands it on. A younger one without a failure is a concurrent duplicate, still being
    # handed on by its first delivery. (Two redeliveries racing after a failure may both hand it on: the
    # workflows apply each event id once, and a usage workflow's id starts once.)
    failed = (earlier.error or "").startswith(NOT_HANDED_ON)
    stalled = datetime.now(UTC) - earlier.created_at > HAND_ON_GRACE
    return Recorded.HAND_ON if failed or stalled else Recorded.DUPLICATE


def _count(request: Request, provider: str, outcome: WebhookOutcome) -> None:
    request.app.state.business_metrics.webhook(provider, outcome)


def _ack(request: Request, provider: str, outcome: WebhookOutcome, event_id: str) -> WebhookAck:
    _count(request, provider, outcome)
    return WebhookAck(status=outcome.value, event_id=event_id)


async def _mark(
    request: Request,
    provider: str,
    event_id: str,
    status: WebhookEventStatus,
    error: str | None = None,
    *,
    statement: Update = _MARK,
) -> None:
    async with autocommit(request.app.state.engine) as connection:
        await connection.execute(
            statement,
            {
                "p": provider,
                "e": event_id,
                "status": status,
                "error": error,
                "processed_at": None if status is WebhookEventStatus.RECEIVED else datetime.now(UTC),
            },
        )


async def _not_handed_on(request: Request, provider: str, event_id: str, exc: Exception) -> None:
    """Temporal could not be reached: the answer is 503, and the row says so, so that the next delivery
    (the provider's retry, or a manual resend seconds later) hands the event on instead of taking it for a
    duplicate still in progress."""
    log.warning("%s event %s not handed on yet: %s", provider, event_id, exc)
    _count(request, provider, WebhookOutcome.RETRY)
    await _mark(
        request,
        provider,
        event_id,
        WebhookEventStatus.RECEIVED,
        f"{NOT_HANDED_ON}{exc}"[:500],
        statement=_MARK_UNFINISHED,
    )


@router.post(
    "/esimgo",
    response_model=WebhookAck,
    summary="eSIM Go usage callbacks (v3), signed with X-Signature-SHA256",
    responses={401: {"description": "Missing or bad signature; nothing stored"}},
)
async def esimgo_callback(request: Request) -> WebhookAck:
    raw = await request.body()
    settings = request.app.state.settings
    if not verify_signature(raw, request.headers.get("X-Signature-SHA256"), str(settings.esimgo_api_key)):
        _count(request, "esimgo", WebhookOutcome.REJECTED)
        raise AppError("CALLBACK_SIGNATURE_INVALID")
    try:
        callback = parse_usage_callback(raw)
    except InvalidCallback as exc:
        _count(request, "esimgo", WebhookOutcome.REJECTED)
        raise AppError("WEBHOOK_PAYLOAD_INVALID", str(exc)) from exc

    # eSIM Go sends no event id; a redelivery carries the same bytes, so the body's hash identifies it.
    event_id = hashlib.sha256(raw).hexdigest()
    workflow_id = usage_workflow_id(event_id)
    payload = callback.model_dump(mode="json")
    if (
        await _record_once(request, "esimgo", event_id, callback.alert_type, payload, workflow_id)
        is Recorded.DUPLICATE
    ):
        return _ack(request, "esimgo", WebhookOutcome.DUPLICATE, event_id)

    try:
        await request.app.state.temporal.start_workflow(
            EsimUsageWorkflow.run,
            UsageEvent(event_id=event_id, callback=callback),
            id=workflow_id,
            task_queue=settings.temporal_task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    except WorkflowAlreadyStartedError:
        return _ack(request, "esimgo", WebhookOutcome.DUPLICATE, event_id)
    except (RPCError, RuntimeError) as exc:  # Temporal unreachable: answered 503, eSIM Go delivers it again
        await _not_handed_on(request, "esimgo", event_id, exc)
        raise
    return _ack(request, "esimgo", WebhookOutcome.ACCEPTED, event_id)


@router.post(
    "/stripe",
    response_model=WebhookAck,
    summary="Stripe events, verified with Stripe-Signature (5 minute tolerance)",
    responses={
        400: {"description": "Missing, bad or stale signature, or not a Stripe event; nothing stored"},
        503: {"description": "Temporal unreachable: recorded, Stripe will redeliver"},
    },
)
async def stripe_event(request: Request) -> WebhookAck | JSONResponse:
    raw = await request.body()
    secret = request.app.state.settings.stripe_webhook_secret
    if not secret:
        raise AppError("SERVICE_UNAVAILABLE", "STRIPE_WEBHOOK_SECRET is not configured")
    try:
        stored = storable(verify_event(raw, request.headers.get("Stripe-Signature"), secret))
        event = parse_event(stored)
    except StripeEventError as exc:
        _count(request, "stripe", WebhookOutcome.REJECTED)
        raise AppError(exc.code, exc.message) from exc

    target = event.workflow_id or await _workflow_of(request, event)
    why = None
    if not event.handled or target is None:
        why = "event type not handled" if not event.handled else "no workflow for this PaymentIntent"
    recorded = await _record_once(
        request, "stripe", event.event_id, event.type, stored, target, ignored_because=why
    )
    if recorded is Recorded.DUPLICATE:
        return _ack(request, "stripe", WebhookOutcome.DUPLICATE, event.event_id)
    if why:
        if recorded is Recorded.HAND_ON:  # an earlier delivery stored it and stopped: settle it
            await _mark(request, "stripe", event.event_id, WebhookEventStatus.IGNORED, why)
        return _ack(request, "stripe", WebhookOutcome.IGNORED, event.event_id)

    try:
        await request.app.state.temporal.get_workflow_handle(target).signal(PAYMENT_SIGNAL, event)
    except (RPCError, RuntimeError) as exc:  # RuntimeError: the lazy client cannot connect
        if not isinstance(exc, RPCError) or exc.status is not RPCStatusCode.NOT_FOUND:
            await _not_handed_on(request, "stripe", event.event_id, exc)
            return JSONResponse({"status": "retry", "event_id": event.event_id}, status_code=503)
        # The workflow has finished (or never existed): kept for operators, nothing to redeliver.
        await _mark(
            request, "stripe", event.event_id, WebhookEventStatus.IGNORED, f"workflow {target} closed"
        )
        return _ack(request, "stripe", WebhookOutcome.IGNORED, event.event_id)
    await mark_delivered(request.app.state.engine, "stripe", event.event_id)
    return _ack(request, "stripe", WebhookOutcome.ACCEPTED, event.event_id)


async def _workflow_of(request: Request, event: PaymentEvent) -> str | None:
    """Events without our metadata (e.g. on charges): the refund or payment row knows the workflow."""
    async with request.app.state.sessions() as session:
        if event.refund_id:
            refund = await session.scalar(
                select(Refund.workflow_id).where(Refund.provider_refund_id == event.refund_id)
            )
            if refund:
                return refund
        if event.intent_id is None:
            return None
        return await session.scalar(
            select(Payment.workflow_id).where(Payment.provider_payment_id == event.intent_id)
        )
