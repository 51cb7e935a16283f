"""eSIM read models: install details, the profile state and every bundle on the eSIM with its usage."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field

from api.schemas.orders import EsimOut
from ttelgo.models import Channel, EsimStatus


class BundleUsageOut(BaseModel):
    name: str
    reference: str | None = Field(description="eSIM Go's assignment reference, once it has reported one")
    order_id: uuid.UUID | None = Field(description="the order (or top-up) that bought it, when ours")
    state: str | None = Field(description="processing, queued, active, depleted, expired, revoked, lapsed")
    unlimited: bool
    data_total_mb: int | None
    data_used_mb: int | None
    data_remaining_mb: int | None
    data_used_percent: float | None = Field(description="None for unlimited bundles or unknown usage")
    data_remaining_percent: float | None
    assigned_at: datetime | None
    started_at: datetime | None
    expires_at: datetime | None


class EsimView(BaseModel):
    iccid: str
    order_id: uuid.UUID = Field(description="the order that sold the eSIM")
    channel: Channel
    customer_reference: str | None
    status: EsimStatus
    profile_status: str | None = Field(
        description="eSIM Go's profile state as last read: released, downloaded, installed, enabled, "
        "disabled, deleted…"
    )
    install: EsimOut = Field(description="SM-DP+ address, matching id, LPA string and QR code link")
    first_used_at: datetime | None
    bundles: list[BundleUsageOut]
    refreshed_at: datetime | None = Field(description="when eSIM Go was last read (None: not yet)")
    refreshed_age_s: int | None = Field(description="seconds since refreshed_at, at the time of this answer")
    stale: bool = Field(description="older than ESIM_FRESHNESS_SECONDS: eSIM Go could not be read just now")
    created_at: datetime


class AdminEsimView(EsimView):
    esim_id: uuid.UUID = Field(
        description="the eSIM's row id: its supplier reads run as `esim-refresh-{esim_id}` in the Temporal UI"
    )
    vendor_id: uuid.UUID | None
    user_id: uuid.UUID | None
    supplier_order_reference: str | None
