"""Top-ups of an eSIM the caller already has: what they send (the price is always ours)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from api.schemas.fields import BundleCode, CustomerReference


class CustomerTopupCreate(BaseModel):
    model_config = ConfigDict(  # a price or amount from the client is refused, not ignored
        extra="forbid", json_schema_extra={"examples": [{"bundle_code": "esim_3GB_7D_FR_V2"}]}
    )

    bundle_code: BundleCode


class VendorTopupCreate(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"bundle_code": "esim_3GB_7D_FR_V2", "customer_reference": "booking-4711-extra"}]
        }
    )

    bundle_code: BundleCode
    customer_reference: CustomerReference | None = None
