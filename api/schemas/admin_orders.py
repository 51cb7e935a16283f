"""Shapes of the admin order tools: lists, the timeline, refunds and the audit trail."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.fields import PositiveAmount, Reason
from api.schemas.orders import EsimOut, OrderOut
from ttelgo.models import Channel, PaymentStatus, RefundStatus
from workflows.order import OperatorAction


class AdminOrderOut(OrderOut):
    channel: Channel
    user_id: uuid.UUID | None
    vendor_id: uuid.UUID | None
    refunded_minor: int
    workflow_id: str
    client_ip: str | None = None  # who placed it (request provenance)
    user_agent: str | None = None


class PaymentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    provider_payment_id: str
    status: PaymentStatus
    amount_minor: int
    refunded_minor: int
    currency: str
    failure_message: str | None
    succeeded_at: datetime | None


class RefundOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    order_id: uuid.UUID
    status: RefundStatus
    amount_minor: int
    currency: str
    reason: str
    requested_by: str
    used_esim_override: bool
    provider_refund_id: str | None
    failure_reason: str | None
    created_at: datetime
    settled_at: datetime | None
    client_ip: str | None = None  # who asked for it (request provenance)
    user_agent: str | None = None


class TimelineEntry(BaseModel):
    at: datetime
    source: str = Field(description="database | workflow | audit")
    event: str
    detail: dict[str, Any] = Field(default_factory=dict)


class AdminOrderDetail(AdminOrderOut):
    customer_email: str | None = None
    esims: list[EsimOut]
    payments: list[PaymentOut]
    refunds: list[RefundOut]
    timeline: list[TimelineEntry]


class RefundCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"amount_minor": 500, "reason": "half of the data never worked", "allow_used_esim": True}
            ]
        },
    )

    amount_minor: PositiveAmount | None = Field(
        default=None, description="left out: everything not yet refunded"
    )
    reason: Reason
    allow_used_esim: bool = Field(
        default=False, description="refund although the eSIM has been used (recorded in the audit log)"
    )


class VendorRefundCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"reason": "the traveller cancelled before installing"}]},
    )

    reason: Reason


class AdminAction(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"reason": "the supplier confirmed the outage is over"}]},
    )

    reason: Reason


class ResolveAction(AdminAction):
    """An operator's decision for an order stopped in NEEDS_ATTENTION."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"action": "retry", "reason": "the supplier corrected the bundle"}]}
    )

    action: OperatorAction = Field(
        description="`retry`: provision again; `give_up`: fail it (wallet hold voided, card refunded)"
    )


class AuditLogOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    actor_type: str
    actor_id: str | None
    action: str
    target_type: str
    target_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    reason: str | None
    request_id: str | None
    ip_address: str | None = None  # who acted (request provenance)
    user_agent: str | None = None
    created_at: datetime
