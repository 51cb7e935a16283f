"""What activities take and return, and their names: shared with workflows, free of I/O."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

SYNC_CATALOGUE = "catalogue.sync"


class CatalogueSyncResult(BaseModel):
    bundles: int
    deactivated: int
    synced_at: datetime
