"""What activities take and return, and their names: shared with workflows, free of I/O."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel

from ttelgo.esimgo.callbacks import UsageCallback
from ttelgo.models.orders import Channel, OrderStatus

SYNC_CATALOGUE = "catalogue.sync"


class CatalogueSyncResult(BaseModel):
    bundles: int
    deactivated: int
    synced_at: datetime


APPLY_USAGE = "esim.apply_usage"


class UsageEvent(BaseModel):
    """A verified eSIM Go usage callback, identified by the hash of its raw body."""

    event_id: str
    callback: UsageCallback


class UsageOutcome(BaseModel):
    applied: bool
    detail: str


# -- orders ----------------------------------------------------------------------------------------------
CREATE_ORDER_RECORD = "orders.create_record"
SET_ORDER_STATUS = "orders.set_status"
STORE_ESIMS = "orders.store_esims"
HOLD_FUNDS = "ledger.hold_funds"
POST_HOLD = "ledger.post_hold"
VOID_HOLD = "ledger.void_hold"
PLACE_SUPPLIER_ORDER = "esimgo.place_order"
FETCH_INSTALL_DETAILS = "esimgo.fetch_install_details"


class OrderInput(BaseModel):
    """Everything the order workflow needs, priced by the API before the start (prices never change after)."""

    order_id: uuid.UUID
    workflow_id: str
    channel: Channel
    vendor_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None
    bundle_code: str
    quantity: int
    unit_price_minor: int
    currency: str
    wholesale_unit_minor: int
    customer_reference: str | None = None
    supplier_task_queue: str

    @property
    def total_minor(self) -> int:
        return self.unit_price_minor * self.quantity


class StatusChange(BaseModel):
    order_id: uuid.UUID
    status: OrderStatus
    failure_code: str | None = None
    failure_reason: str | None = None


class EsimInstall(BaseModel):
    iccid: str
    matching_id: str
    smdp_address: str


class SupplierOrderRef(BaseModel):
    reference: str
    completed: bool
    esims: list[EsimInstall] = []  # small orders come back with their eSIMs; large ones are read later


class StoreEsims(BaseModel):
    order_id: uuid.UUID
    bundle_code: str
    esims: list[EsimInstall]
