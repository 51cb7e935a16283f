"""Shapes of the reconciliation runs API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.fields import OptionalReason
from ttelgo.models import FindingAction, FindingKind, ReconciliationStatus


class ReconciliationRunCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"window_minutes": 1440, "reason": "after the supplier incident"}]},
    )

    window_minutes: int | None = Field(
        default=None, ge=1, le=43_200, description="how far back to compare; RECONCILIATION_WINDOW_MINUTES"
    )
    reason: OptionalReason | None = Field(default=None, description="for the audit trail")


class ReconciliationRunAccepted(BaseModel):
    id: uuid.UUID
    status: ReconciliationStatus
    workflow_id: str


class FindingOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    kind: FindingKind
    action: FindingAction
    subject: str = Field(description="the supplier order reference, Stripe object id or order id")
    order_id: uuid.UUID | None
    detail: dict[str, Any]
    created_at: datetime


class ReconciliationRunOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    workflow_id: str
    requested_by: str | None = None
    status: ReconciliationStatus
    window_start: datetime | None = None
    window_end: datetime | None = Field(
        default=None, description="discrepancies younger than this were left to their workflows"
    )
    summary: dict[str, int] = Field(default_factory=dict, description="findings by kind")
    notes: list[str] = Field(default_factory=list, description="what could not be checked")
    errors: list[str] = Field(default_factory=list, description="checks that gave up after their retries")
    created_at: datetime | None = None
    finished_at: datetime | None = None


class ReconciliationRunDetail(ReconciliationRunOut):
    findings: list[FindingOut] = Field(default_factory=list)
