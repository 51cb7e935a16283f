"""A wallet statement over a period: balances, totals by entry type, and a page of its entries."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.orders import LedgerEntryOut
from ttelgo.models import LedgerEntryType


class StatementEntryOut(LedgerEntryOut):
    posted_minor: int = Field(
        description="what this entry moved the posted balance by: 0 for a hold (ORDER_HOLD) and its "
        "release (HOLD_RELEASE), which change only the available balance"
    )


class EntryTypeTotal(BaseModel):
    entry_type: LedgerEntryType
    count: int
    amount_minor: int = Field(description="sum of the entries' amount_minor")
    posted_minor: int = Field(description="sum of the entries' posted_minor")


class StatementOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    vendor_id: uuid.UUID
    currency: str
    from_: date = Field(alias="from", description="first day (UTC), inclusive")
    to: date = Field(description="last day (UTC), inclusive")
    period_start: datetime = Field(description="start of `from` (UTC), inclusive")
    period_end: datetime = Field(description="end of `to` (UTC): the day after, exclusive")
    balances: Literal["POSTED"] = Field(
        default="POSTED",
        description="the opening and closing balances count posted entries only; money held for orders "
        "in flight is in held_at_close_minor, not in them",
    )
    opening_balance_minor: int = Field(description="posted balance before the period's first entry")
    closing_balance_minor: int = Field(
        description="posted balance after the period's last entry: opening + the sum of posted_minor"
    )
    held_at_close_minor: int = Field(
        description="holds still open at the end of the period (not yet posted or released)"
    )
    totals: list[EntryTypeTotal] = Field(description="per entry type, every type listed (zeros included)")
    items: list[StatementEntryOut] = Field(description="this page of the period's entries, newest first")
    page: int
    page_size: int
    total: int = Field(description="entries in the period")
