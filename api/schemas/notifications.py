"""Shapes of the admin notifications (e-mail outbox) API. The payload (install codes) is not shown."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.fields import OptionalReason
from ttelgo.models import NotificationChannel, NotificationStatus


class NotificationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    dedupe_key: str
    channel: NotificationChannel
    template: str
    recipient: str
    status: NotificationStatus
    attempts: int
    last_error: str | None
    sent_at: datetime | None
    user_id: uuid.UUID | None
    vendor_id: uuid.UUID | None
    order_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class NotificationResend(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reason": "the customer fixed their mailbox"}]}
    )

    reason: OptionalReason | None = Field(default=None, description="for the audit trail")


class NotificationResent(BaseModel):
    notification: NotificationOut
    workflow_id: str
