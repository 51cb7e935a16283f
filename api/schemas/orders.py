"""Order shapes for vendors (and, later, customers)."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.fields import BundleCode, CustomerReference
from ttelgo.models import LedgerEntryType, OrderKind, OrderStatus


class VendorOrderCreate(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"bundle_code": "esim_1GB_7D_GB_V2", "quantity": 2, "customer_reference": "booking-4711"}
            ]
        }
    )

    bundle_code: BundleCode
    quantity: int = Field(ge=1, le=10, description="the supplier advises at most 10 bundles per order")
    customer_reference: CustomerReference | None = None


class EsimOut(BaseModel):
    iccid: str
    smdp_address: str
    matching_id: str
    lpa: str = Field(description="LPA:1$<SM-DP+>$<matching id>: what the QR code encodes")
    qr_code_url: str


class LiveProgress(BaseModel):
    step: str
    attempts: int | None = Field(default=None, description="attempts of the step now running")
    last_error: str | None = None


class OrderOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    kind: OrderKind = Field(description="ORDER: new eSIMs; TOPUP: one more bundle on `target_iccid`")
    target_iccid: str | None = Field(description="the eSIM a top-up is for")
    status: OrderStatus
    bundle_code: str
    quantity: int
    unit_price_minor: int
    total_minor: int
    currency: str
    customer_reference: str | None
    failure_code: str | None
    failure_reason: str | None
    created_at: datetime
    completed_at: datetime | None


class OrderDetail(OrderOut):
    progress: LiveProgress | None = Field(default=None, description="present while the order is in flight")
    esims: list[EsimOut] = Field(default_factory=list)


class LedgerEntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    entry_type: LedgerEntryType
    amount_minor: int
    currency: str
    balance_after_minor: int
    available_after_minor: int
    order_id: uuid.UUID | None
    transfer_id: str
    description: str | None
    created_at: datetime
