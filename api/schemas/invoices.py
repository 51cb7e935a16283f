"""POSTPAID invoice shapes for the vendor and admin APIs."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.fields import OptionalReason
from ttelgo.models import InvoiceStatus
from ttelgo.months import MONTH_PATTERN

Period = Annotated[str, Field(pattern=MONTH_PATTERN, description="a month, YYYY-MM (UTC)")]


class InvoiceLineOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    bundle_code: str
    quantity: int
    amount_minor: int


class InvoiceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    number: str
    vendor_id: uuid.UUID
    period: str
    currency: str
    debits_minor: int
    refunds_minor: int
    total_minor: int
    issued_at: datetime
    due_at: datetime
    status: InvoiceStatus
    paid_at: datetime | None


class InvoiceDetail(InvoiceOut):
    lines: list[InvoiceLineOut]


class InvoiceRun(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"vendor_id": "6f1c2b9e-5d4a-4f7e-9b1a-2c3d4e5f6a7b", "period": "2026-10"}]
        }
    )

    vendor_id: uuid.UUID
    period: Period


class InvoiceSettle(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"reason": "bank transfer received 2026-11-20"}]}
    )

    reason: OptionalReason | None = None
