"""The `webhook_deliveries` rows: one per vendor event, written once (unique vendor + event id)."""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from ttelgo.models import DeliveryStatus, Vendor, WebhookDelivery
from ttelgo.webhooks.events import event_body, subscribed


async def record_delivery(
    session: AsyncSession, vendor: Vendor, event_type: str, event_id: str, data: dict[str, Any]
) -> WebhookDelivery | None:
    """The row for this event (as first stored), or None when the vendor takes no such events."""
    if not vendor.webhook_url or vendor.deleted_at or not subscribed(vendor.webhook_events, event_type):
        return None
    await session.execute(
        insert(WebhookDelivery)
        .values(
            id=uuid.uuid4(),
            vendor_id=vendor.id,
            event_id=event_id,
            event_type=event_type,
            url=vendor.webhook_url,
            payload=event_body(event_type, datetime.now(UTC), data),
        )
        .on_conflict_do_nothing(index_elements=["vendor_id", "event_id"])
    )
    return await session.scalar(
        select(WebhookDelivery).where(
            WebhookDelivery.vendor_id == vendor.id, WebhookDelivery.event_id == event_id
        )
    )


async def start_delivery(
    client: Any, workflow: str, job: Any, workflow_id: str, task_queue: str, *, again: bool = False
) -> None:
    """Starts the delivery run; a running one is reused (and, with `again`, told to try now), a finished
    one is only started again when `again` (a redelivery)."""
    with contextlib.suppress(WorkflowAlreadyStartedError):
        handle = await client.start_workflow(
            workflow,
            job,
            id=workflow_id,
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE
            if again
            else WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
        if again:
            await handle.signal("attempt_now")


def deliveries_query(
    vendor_id: uuid.UUID, status: DeliveryStatus | None, event_type: str | None
) -> Select[Any]:
    """A vendor's deliveries, newest first, optionally by status and event type."""
    query = select(WebhookDelivery).where(WebhookDelivery.vendor_id == vendor_id)
    if status:
        query = query.where(WebhookDelivery.status == status)
    if event_type:
        query = query.where(WebhookDelivery.event_type == event_type)
    return query.order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id)
