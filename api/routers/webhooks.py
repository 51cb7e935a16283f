"""Inbound webhooks: verify on the raw body, record each event once, hand it to a workflow, answer fast."""

from __future__ import annotations

import hashlib
import logging

from fastapi import APIRouter, Request
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from activities.contracts import UsageEvent
from ttelgo.errors import AppError
from ttelgo.esimgo.callbacks import InvalidCallback, parse_usage_callback, verify_signature
from ttelgo.models import WebhookEvent, WebhookEventStatus
from workflows.esim_usage import EsimUsageWorkflow, usage_workflow_id

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])
log = logging.getLogger(__name__)


class WebhookAck(BaseModel):
    status: str  # accepted | duplicate
    event_id: str


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
        raise AppError("CALLBACK_SIGNATURE_INVALID")
    try:
        callback = parse_usage_callback(raw)
    except InvalidCallback as exc:
        raise AppError("WEBHOOK_PAYLOAD_INVALID", str(exc)) from exc

    # eSIM Go sends no event id; a redelivery carries the same bytes, so the body's hash identifies it.
    event_id = hashlib.sha256(raw).hexdigest()
    workflow_id = usage_workflow_id(event_id)
    async with request.app.state.sessions() as session, session.begin():
        inserted = await session.scalar(
            insert(WebhookEvent)
            .values(
                provider="esimgo",
                event_id=event_id,
                event_type=callback.alert_type,
                payload=callback.model_dump(mode="json"),
                target_workflow_id=workflow_id,
            )
            .on_conflict_do_nothing(index_elements=["provider", "event_id"])
            .returning(WebhookEvent.id)
        )
        status = (
            None
            if inserted
            else await session.scalar(
                select(WebhookEvent.status).where(
                    WebhookEvent.provider == "esimgo", WebhookEvent.event_id == event_id
                )
            )
        )
    if status not in (None, WebhookEventStatus.RECEIVED):
        return WebhookAck(status="duplicate", event_id=event_id)

    try:
        await request.app.state.temporal.start_workflow(
            EsimUsageWorkflow.run,
            UsageEvent(event_id=event_id, callback=callback),
            id=workflow_id,
            task_queue=settings.temporal_task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    except WorkflowAlreadyStartedError:
        return WebhookAck(status="duplicate", event_id=event_id)
    return WebhookAck(status="accepted", event_id=event_id)
