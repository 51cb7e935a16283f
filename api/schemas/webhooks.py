"""Vendor webhook settings and deliveries."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, HttpUrl

from ttelgo.models import DeliveryStatus
from ttelgo.webhooks.events import WebhookEventType

URL_MAX_LENGTH = 2048  # vendors.webhook_url and webhook_deliveries.url


def _fits_column(url: HttpUrl) -> HttpUrl:
    if len(str(url)) > URL_MAX_LENGTH:  # as stored: normalising can make it longer than it was sent
        raise ValueError(f"the URL is longer than {URL_MAX_LENGTH} characters")
    return url


class WebhookUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": "https://shop.example.com/ttelgo/events",
                    "events": ["order.completed", "order.failed"],
                }
            ]
        },
    )

    url: Annotated[HttpUrl, AfterValidator(_fits_column)] | None = Field(
        description="where events are POSTed; null stops them (and drops the secrets)"
    )
    events: list[WebhookEventType] | None = Field(
        default=None, max_length=20, description="the event types to send; null means every type"
    )


class WebhookOut(BaseModel):
    url: str | None
    events: list[str] | None = None
    secret: str | None = Field(
        default=None,
        description="the signing secret (`whsec_…`), shown only when it is made: the first URL or a rotation",
    )
    previous_secret_expires_at: datetime | None = None


class WebhookDeliveryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    vendor_id: uuid.UUID
    event_id: str = Field(description="the `webhook-id` header of every attempt")
    event_type: str
    url: str
    status: DeliveryStatus
    attempts: int
    last_status_code: int | None
    last_error: str | None
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    redeliveries: int
    created_at: datetime
    updated_at: datetime


class WebhookDeliveryDetail(WebhookDeliveryOut):
    payload: dict[str, Any] = Field(description="the body sent on every attempt")


class WebhookQueued(BaseModel):
    delivery: WebhookDeliveryOut
    workflow_id: str
