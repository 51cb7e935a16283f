"""Vendor webhooks (team owners and developers): the URL, its event types and signing secret, a test
`ping`, the deliveries and their redelivery. Events themselves are emitted by the workflows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import select
from temporalio.service import RPCError

from activities.contracts import WEBHOOK_WORKFLOW, WebhookJob, webhook_workflow_id
from api.deps import Session, VendorCaller, request_id, require_vendor_member
from api.pagination import Page, Paging
from api.problems import RETRY_AFTER_S
from api.schemas.webhooks import (
    WebhookDeliveryDetail,
    WebhookDeliveryOut,
    WebhookOut,
    WebhookQueued,
    WebhookUpdate,
)
from ttelgo import vendors
from ttelgo.audit import record_action
from ttelgo.errors import AppError
from ttelgo.models import DeliveryStatus, Vendor, VendorUserRole, WebhookDelivery
from ttelgo.settings import Settings
from ttelgo.webhooks import UnsafeWebhookUrl, WebhookEventType, check_url_resolves
from ttelgo.webhooks.outbox import deliveries_query, record_delivery, start_delivery

router = APIRouter(prefix="/api/v1/vendor/webhook", tags=["vendor: webhooks"])


def _manager(member: Annotated[VendorCaller, Depends(require_vendor_member)]) -> VendorCaller:
    """A logged-in owner or developer (viewers and API keys cannot see or change webhooks)."""
    if member.role is VendorUserRole.VIEWER:
        raise AppError("FORBIDDEN", "viewers cannot manage webhooks")
    return member


Manager = Annotated[VendorCaller, Depends(_manager)]


def _shown(vendor: Vendor, secret: str | None = None) -> WebhookOut:
    return WebhookOut(
        url=vendor.webhook_url,
        events=vendor.webhook_events,
        secret=secret,
        previous_secret_expires_at=vendor.webhook_previous_secret_expires_at
        if vendor.webhook_previous_secret
        else None,
    )


def job_for(settings: Settings, delivery_id: uuid.UUID) -> WebhookJob:
    return WebhookJob(
        delivery_id=delivery_id,
        window_s=settings.webhook_retry_window_s,
        first_backoff_s=settings.webhook_first_backoff_seconds,
    )


async def start(request: Request, row: WebhookDelivery, *, again: bool) -> str:
    """Starts (or wakes) the row's delivery workflow; 503 when Temporal cannot be reached."""
    settings: Settings = request.app.state.settings
    workflow_id = webhook_workflow_id(row.event_id)
    try:
        await start_delivery(
            request.app.state.temporal,
            WEBHOOK_WORKFLOW,
            job_for(settings, row.id),
            workflow_id,
            settings.temporal_task_queue,
            again=again,
        )
    except (RPCError, RuntimeError) as exc:
        raise AppError(
            "SERVICE_UNAVAILABLE",
            "recorded, but Temporal is unreachable to deliver it; redeliver later",
            extra={"dependency": "Temporal"},
            headers={"Retry-After": str(RETRY_AFTER_S)},
        ) from exc
    return workflow_id


@router.get("", response_model=WebhookOut, summary="The webhook URL and event types (never the secret)")
async def show(member: Manager, session: Session) -> WebhookOut:
    vendor = await vendors.get_vendor(session, member.vendor_id)
    return _shown(vendor)


@router.put(
    "",
    response_model=WebhookOut,
    summary="Where events are sent (Standard Webhooks, signed); the secret is shown once, when made",
)
async def set_webhook(request: Request, body: WebhookUpdate, member: Manager, session: Session) -> WebhookOut:
    url = str(body.url) if body.url else None
    if url:
        try:
            await check_url_resolves(url, public_only=request.app.state.settings.webhooks_public_only)
        except UnsafeWebhookUrl as refused:
            raise AppError("VALIDATION_ERROR", str(refused)) from None
    async with session.begin():
        vendor = await vendors.get_vendor(session, member.vendor_id, lock=True)
        secret = vendors.set_webhook(
            session,
            vendor,
            url=url,
            events=[e.value for e in body.events] if body.events is not None else None,
            actor=member.actor,
            request_id=request_id(request),
        )
        shown = _shown(vendor, secret)
    return shown


@router.post(
    "/rotate-secret",
    response_model=WebhookOut,
    summary="A new signing secret (shown once); the old one keeps signing alongside for 24 h",
)
async def rotate_secret(request: Request, member: Manager, session: Session) -> WebhookOut:
    async with session.begin():
        vendor = await vendors.get_vendor(session, member.vendor_id, lock=True)
        secret = vendors.rotate_webhook_secret(
            session, vendor, actor=member.actor, request_id=request_id(request)
        )
        shown = _shown(vendor, secret)
    return shown


@router.post("/test", response_model=WebhookQueued, status_code=202, summary="Send a `ping` event")
async def ping(request: Request, member: Manager, session: Session) -> WebhookQueued:
    event_id = "evt_" + uuid.uuid4().hex
    async with session.begin():
        vendor = await vendors.get_vendor(session, member.vendor_id)
        if not vendor.webhook_url:
            raise AppError("CONFLICT", "set a webhook URL first")
        data = {"vendor_id": str(vendor.id), "sent_at": datetime.now(UTC).isoformat().replace("+00:00", "Z")}
        row = await record_delivery(session, vendor, WebhookEventType.PING.value, event_id, data)
        assert row is not None
        shown = WebhookDeliveryOut.model_validate(row)
    return WebhookQueued(delivery=shown, workflow_id=await start(request, row, again=False))


EventTypeFilter = Annotated[WebhookEventType | None, Query(alias="type")]


@router.get("/deliveries", response_model=Page[WebhookDeliveryOut], summary="My deliveries, newest first")
async def list_deliveries(
    member: Manager,
    session: Session,
    paging: Paging,
    status: DeliveryStatus | None = None,
    event_type: EventTypeFilter = None,
) -> Page[WebhookDeliveryOut]:
    query = deliveries_query(member.vendor_id, status, event_type.value if event_type else None)
    return await paging.fetch_page(session, query, WebhookDeliveryOut)


async def _own(
    session: Session, vendor_id: uuid.UUID, delivery_id: uuid.UUID, *, lock: bool = False
) -> WebhookDelivery:
    query = select(WebhookDelivery).where(
        WebhookDelivery.id == delivery_id, WebhookDelivery.vendor_id == vendor_id
    )
    row = await session.scalar(query.with_for_update() if lock else query)
    if row is None:
        raise AppError("NOT_FOUND", f"no webhook delivery {delivery_id}")
    return row


@router.get(
    "/deliveries/{delivery_id}", response_model=WebhookDeliveryDetail, summary="One delivery, with its body"
)
async def get_delivery(delivery_id: uuid.UUID, member: Manager, session: Session) -> WebhookDeliveryDetail:
    return WebhookDeliveryDetail.model_validate(await _own(session, member.vendor_id, delivery_id))


@router.post(
    "/deliveries/{delivery_id}/redeliver",
    response_model=WebhookQueued,
    status_code=202,
    summary="Deliver the same event again (same body, same `webhook-id`), with a new retry window",
)
async def redeliver(
    request: Request, delivery_id: uuid.UUID, member: Manager, session: Session
) -> WebhookQueued:
    async with session.begin():
        row = await _own(session, member.vendor_id, delivery_id, lock=True)
        vendor = await vendors.get_vendor(session, member.vendor_id)
        if not vendor.webhook_url:
            raise AppError("CONFLICT", "set a webhook URL first")
        before = {"status": row.status.value, "attempts": row.attempts}
        row.status, row.delivered_at, row.next_attempt_at = DeliveryStatus.PENDING, None, None
        row.url = vendor.webhook_url  # the current URL: a vendor that moved its endpoint redelivers there
        row.redeliveries += 1
        record_action(
            session,
            actor=member.actor,
            action="webhook_delivery.redeliver",
            target_type="webhook_delivery",
            target_id=row.id,
            before=before,
            after={"status": DeliveryStatus.PENDING.value},
            request_id=request_id(request),
        )
        await session.flush()
        await session.refresh(row)
        shown = WebhookDeliveryOut.model_validate(row)
    return WebhookQueued(delivery=shown, workflow_id=await start(request, row, again=True))
