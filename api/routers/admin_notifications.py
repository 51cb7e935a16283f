"""Admin: the e-mail outbox (`notifications`): what was queued, sent or failed, and sending one again."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Query, Request
from sqlalchemy import select
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError

from activities.contracts import Delivery, notification_workflow_id
from api.deps import Admin, Session, request_id
from api.pagination import Page, Paging
from api.problems import RETRY_AFTER_S
from api.schemas.notifications import NotificationOut, NotificationResend, NotificationResent
from ttelgo.audit import record_action
from ttelgo.errors import AppError
from ttelgo.models import Notification, NotificationChannel, NotificationStatus
from workflows.notification import NotificationWorkflow

router = APIRouter(prefix="/api/v1/admin/notifications", tags=["admin: notifications"])


@router.get(
    "", response_model=Page[NotificationOut], summary="Notifications (the e-mail outbox), newest first"
)
async def list_notifications(
    admin: Admin,
    session: Session,
    paging: Paging,
    status: NotificationStatus | None = None,
    channel: NotificationChannel | None = None,
    template: Annotated[str | None, Query(max_length=100, pattern=r"^[a-z_]+$")] = None,
    order_id: uuid.UUID | None = None,
) -> Page[NotificationOut]:
    query = select(Notification)
    if status:
        query = query.where(Notification.status == status)
    if channel:
        query = query.where(Notification.channel == channel)
    if template:
        query = query.where(Notification.template == template)
    if order_id:
        query = query.where(Notification.order_id == order_id)
    order = (Notification.created_at.desc(), Notification.id)
    return await paging.fetch_page(session, query.order_by(*order), NotificationOut)


@router.post(
    "/{notification_id}/resend",
    response_model=NotificationResent,
    status_code=202,
    summary="Queue a notification again (sent or failed) and start its delivery; audited",
)
async def resend(
    request: Request,
    notification_id: uuid.UUID,
    admin: Admin,
    body: Annotated[NotificationResend | None, Body()] = None,
) -> NotificationResent:
    body = body or NotificationResend()
    settings = request.app.state.settings
    async with request.app.state.sessions() as session, session.begin():
        row = await session.get(Notification, notification_id, with_for_update=True)
        if row is None:
            raise AppError("NOT_FOUND", f"no notification {notification_id}")
        before = {"status": row.status.value, "attempts": row.attempts, "last_error": row.last_error}
        resends = int(row.payload.get("resend", 0)) + 1
        # Back in the outbox, in the same transaction as its audit entry; a new Message-ID, so the
        # recipient's mail client does not hide it as a duplicate of the first.
        row.status, row.sent_at, row.last_error = NotificationStatus.QUEUED, None, None
        row.payload = {**row.payload, "resend": resends}
        record_action(
            session,
            actor=admin.actor,
            action="notification.resend",
            target_type="notification",
            target_id=notification_id,
            before=before,
            after={"status": NotificationStatus.QUEUED.value, "resend": resends},
            reason=body.reason,
            request_id=request_id(request),
        )
        await session.flush()
        await session.refresh(row)  # server-side updated_at
        shown = NotificationOut.model_validate(row)
    workflow_id = notification_workflow_id(notification_id)
    try:
        await request.app.state.temporal.start_workflow(
            NotificationWorkflow.run,
            Delivery(
                notification_id=notification_id,
                retry_budget_s=round(settings.mail_retry_budget_minutes * 60),
            ),
            id=workflow_id,
            task_queue=settings.temporal_task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,  # one still sending: it sends this
        )
    except (RPCError, RuntimeError) as exc:
        raise AppError(
            "SERVICE_UNAVAILABLE",
            "queued again, but Temporal is unreachable to send it; resend again later",
            extra={"dependency": "Temporal"},
            headers={"Retry-After": str(RETRY_AFTER_S)},
        ) from exc
    return NotificationResent(notification=shown, workflow_id=workflow_id)
