"""Vendor, wallet, API key and team shapes for the admin and vendor APIs."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, EmailStr, Field, model_validator

from api.schemas.fields import (
    KeyName,
    MinorAmount,
    Name,
    NonNegativeAmount,
    OptionalReason,
    Password,
)
from api.schemas.fields import Reason as ReasonText
from ttelgo.models import BillingMode, VendorStatus, VendorUserRole


class VendorCreate(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "Wanderlust Travel",
                    "contact_email": "ops@wanderlust.example.com",
                    "billing_mode": "PREPAID",
                    "currency": "USD",
                    "owner_email": "owner@wanderlust.example.com",
                    "owner_password": "correct horse battery staple",
                }
            ]
        }
    )

    name: Name
    contact_email: EmailStr
    billing_mode: BillingMode = BillingMode.PREPAID
    credit_limit_minor: NonNegativeAmount = 0
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    markup_bps: int | None = Field(default=None, ge=0, le=100_000)
    owner_email: EmailStr | None = None
    owner_password: Password | None = None

    @model_validator(mode="after")
    def owner_needs_both(self) -> VendorCreate:
        if (self.owner_email is None) != (self.owner_password is None):
            raise ValueError("give owner_email and owner_password together (or neither)")
        return self


class WalletOut(BaseModel):
    currency: str
    balance_minor: int
    available_minor: int
    held_minor: int
    credit_limit_minor: int


class VendorOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    contact_email: str
    status: VendorStatus
    billing_mode: BillingMode
    credit_limit_minor: int
    currency: str
    markup_bps: int | None
    low_balance_threshold_minor: int | None = None
    webhook_url: str | None
    approved_at: datetime | None
    suspended_at: datetime | None
    created_at: datetime
    deleted_at: datetime | None = Field(default=None, description="set while the vendor is deactivated")


class VendorDetail(VendorOut):
    wallet: WalletOut


class Reason(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"reason": "documents checked with the reseller"}]}
    )

    reason: OptionalReason | None = None


class BalanceAdjustment(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"amount_minor": 10000, "reason": "goodwill credit for ticket 1234"}]}
    )

    amount_minor: MinorAmount = Field(description="positive credits the wallet, negative debits it")
    reason: ReasonText


class BillingUpdate(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"billing_mode": "POSTPAID", "credit_limit_minor": 500000}]}
    )

    billing_mode: BillingMode
    credit_limit_minor: NonNegativeAmount


class MarkupUpdate(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"markup_bps": 1500}]})

    markup_bps: int | None = Field(ge=0, le=100_000, description="null falls back to the platform default")


class LowBalanceUpdate(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"threshold_minor": 20000}]})

    threshold_minor: MinorAmount | None = Field(
        description="alert when an order takes the available balance below this (minor units); null: never",
    )


class VendorUpdate(BaseModel):
    """Only the fields sent change; `low_balance_threshold_minor: null` turns the alert off."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"name": "Wanderlust Travel Ltd", "contact_email": "billing@wanderlust.example.com"}]
        }
    )

    name: Name | None = None
    contact_email: EmailStr | None = None
    low_balance_threshold_minor: MinorAmount | None = Field(
        default=None, description="as PATCH …/low-balance: minor units; null: never alert"
    )

    @model_validator(mode="after")
    def something_to_change(self) -> VendorUpdate:
        if not self.model_fields_set:
            raise ValueError("send at least one of name, contact_email, low_balance_threshold_minor")
        if {"name", "contact_email"} & {f for f in self.model_fields_set if getattr(self, f) is None}:
            raise ValueError("name and contact_email cannot be null")
        return self

    def changes(self) -> dict[str, object]:
        return self.model_dump(include=self.model_fields_set)


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "booking backend"}]})

    name: KeyName


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    prefix: str
    last_used_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="the full key; shown only in this response")


class MemberCreate(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "email": "dev@wanderlust.example.com",
                    "password": "correct horse battery staple",
                    "role": "developer",
                }
            ]
        }
    )

    email: EmailStr
    password: Password
    role: VendorUserRole = VendorUserRole.VIEWER


class MemberOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    vendor_id: uuid.UUID
    email: str
    role: VendorUserRole
    created_at: datetime
    deleted_at: datetime | None = Field(default=None, description="set while the member is deactivated")
