"""What activities take and return, and their names: shared with workflows, free of I/O."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from ttelgo.esimgo.callbacks import UsageCallback

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
