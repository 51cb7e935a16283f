"""Request bodies: the eSIM Go API's (camelCase, as on the wire) and the /_sim admin API's."""

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .state import BundleState, ProfileStatus


class OrderItem(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    type: Literal["bundle"]
    quantity: int = Field(ge=1)
    item: str = Field(min_length=1)
    iccids: list[str] | None = None
    allow_reassign: bool = Field(False, alias="allowReassign")


class OrderRequest(BaseModel):
    type: Literal["validate", "transaction"]
    assign: bool = False
    order: list[OrderItem] = Field(min_length=1)


class InventoryRefund(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    usage_id: int = Field(alias="usageId")
    quantity: int = Field(1, ge=1)


class BalanceUpdate(BaseModel):
    balance: Decimal = Field(ge=0)


class CallbackUrlUpdate(BaseModel):
    url: str | None


class RateLimitUpdate(BaseModel):
    per_second: int = Field(ge=0)


class UsageRequest(BaseModel):
    bytes: int = Field(gt=0)


class ClockUpdate(BaseModel):
    offset_seconds: float = Field(description="the simulator's now minus real time (negative: the past)")


class ProfileStatusUpdate(BaseModel):
    profile_status: ProfileStatus


class BundleStateUpdate(BaseModel):
    bundle_state: BundleState
