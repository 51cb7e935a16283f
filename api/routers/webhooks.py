"""Inbound webhooks: verify on the raw body, record each event once, hand it to a workflow, answer fast."""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.contracts import UsageEvent
from api.business_metrics import WebhookOutcome
from ttelgo.errors import AppError
from ttelgo.esimgo.callbacks import InvalidCallback, parse_usage_callback, verify_signature
from ttelgo.models import Payment, Refund, WebhookEvent, WebhookEventStatus
from ttelgo.payments import PaymentEvent, StripeEventError, parse_event, storable, verify_event
from workflows.esim_usage import EsimUsageWorkflow, usage_workflow_id

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])
log = logging.getLogger(__name__)
HAND_ON_GRACE = timedelta(seconds=30)
PAYMENT_SIGNAL = "payment_event"  # the order and top-up workflows both take Stripe events by this name


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
) -> bool:
    """Stores the event unless it is stored already; True while it still has to be handed on."""
    async with request.app.state.sessions() as session, session.begin():
        inserted = await session.scalar(
            insert(WebhookEvent)
            .values(
                provider=provider,
                event_id=event_id,
                event_type=event_type,
                payload=payload,
                target_workflow_id=target_workflow_id,
            )
            .on_conflict_do_nothing(index_elements=["provider", "event_id"])
            .returning(WebhookEvent.id)
        )
        if inserted:
            return True
        earlier = (
            await session.execute(
                select(WebhookEvent.status, WebhookEvent.created_at).where(
                    WebhookEvent.provider == provider, WebhookEvent.event_id == event_id
                )
            )
        ).one()
    # Still RECEIVED long after it came: that delivery stopped before handing it on, so this one does.
    # A younger one is a concurrent duplicate, still being handed on by its first delivery.
    stalled = datetime.now(UTC) - earlier.created_at > HAND_ON_GRACE
    return earlier.status is WebhookEventStatus.RECEIVED and stalled


def _count(request: Request, provider: str, outcome: WebhookOutcome) -> None:
    request.app.state.business_metrics.webhook(provider, outcome)


def _ack(request: Request, provider: str, outcome: WebhookOutcome, event_id: str) -> WebhookAck:
    _count(request, provider, outcome)
    return WebhookAck(status=outcome.value, event_id=event_id)


async def _mark(
    request: Request, provider: str, event_id: str, status: WebhookEventStatus, error: str | None = None
) -> None:
    async with request.app.state.sessions() as session, session.begin():
        await session.execute(
            update(WebhookEvent)
            .where(WebhookEvent.provider == provider, WebhookEvent.event_id == event_id)
            .values(status=status, error=error, processed_at=datetime.now(UTC))
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
    if not await _record_once(request, "esimgo", event_id, callback.alert_type, payload, workflow_id):
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
    except (RPCError, RuntimeError):  # Temporal unreachable: answered 503, eSIM Go delivers it again
        _count(request, "esimgo", WebhookOutcome.RETRY)
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
    if not await _record_once(request, "stripe", event.event_id, event.type, stored, target):
        return _ack(request, "stripe", WebhookOutcome.DUPLICATE, event.event_id)
    if not event.handled or target is None:
        why = "event type not handled" if not event.handled else "no workflow for this PaymentIntent"
        await _mark(request, "stripe", event.event_id, WebhookEventStatus.IGNORED, why)
        return _ack(request, "stripe", WebhookOutcome.IGNORED, event.event_id)

    try:
        await request.app.state.temporal.get_workflow_handle(target).signal(PAYMENT_SIGNAL, event)
    except (RPCError, RuntimeError) as exc:  # RuntimeError: the lazy client cannot connect
        if not isinstance(exc, RPCError) or exc.status is not RPCStatusCode.NOT_FOUND:
            log.warning("Stripe event %s not handed on yet: %s", event.event_id, exc)
            _count(request, "stripe", WebhookOutcome.RETRY)
            return JSONResponse({"status": "retry", "event_id": event.event_id}, status_code=503)
        # The workflow has finished (or never existed): kept for operators, nothing to redeliver.
        await _mark(
            request, "stripe", event.event_id, WebhookEventStatus.IGNORED, f"workflow {target} closed"
        )
        return _ack(request, "stripe", WebhookOutcome.IGNORED, event.event_id)
    await _mark(request, "stripe", event.event_id, WebhookEventStatus.DELIVERED)
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
