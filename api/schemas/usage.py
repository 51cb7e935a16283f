"""Vendor API traffic: the per-vendor rate limit admins set, and the usage report."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.fields import OptionalReason

MAX_REQUESTS_PER_MINUTE = 1_000_000


class VendorRateLimitUpdate(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"requests_per_minute": 600, "reason": "launch week traffic agreed with the vendor"}]
        }
    )

    requests_per_minute: Annotated[int, Field(ge=1, le=MAX_REQUESTS_PER_MINUTE)] | None = Field(
        description="requests per minute the vendor's API keys and team may make together; null: the default"
    )
    reason: OptionalReason | None = None


class VendorRateLimitOut(BaseModel):
    vendor_id: uuid.UUID
    requests_per_minute: int | None = Field(
        description="the vendor's own limit; null when the default applies"
    )
    policy: str = Field(description='the RateLimit-Policy item its calls carry, e.g. "vendor";q=300;w=60')


class UsageRow(BaseModel):
    day: date
    method: str
    endpoint: str = Field(description="the route template, e.g. /api/v1/vendor/orders/{order_id}")
    requests: int
    errors: int = Field(description="answers with a 4xx or 5xx status")
    client_errors: int
    server_errors: int
    avg_latency_ms: float
    p95_latency_ms: float


class UsageReport(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    vendor_id: uuid.UUID
    from_: date = Field(alias="from", description="first day (UTC), inclusive")
    to: date = Field(description="last day (UTC), inclusive")
    items: list[UsageRow]
