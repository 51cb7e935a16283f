"""Admin reports: the margin of orders over a period."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from ttelgo.ledger.margin import GroupBy


class MarginRow(BaseModel):
    key: str | None = Field(
        description="the channel, vendor id, bundle code or country (ISO 3166 alpha-2, MULTI for a bundle of "
        "several countries) the row adds up; null for a card order's vendor"
    )
    currency: str
    revenue_minor: int = Field(description="wallet orders posted and card orders completed in the period")
    refunds_minor: int = Field(description="money returned in the period (wallet credits, card refunds)")
    supplier_cost_minor: int = Field(description="wholesale cost booked for orders completed in the period")
    supplier_credits_minor: int = Field(description="wholesale cost eSIM Go refunded for revoked bundles")
    margin_minor: int = Field(description="revenue − refunds − supplier cost + supplier credits")


class MarginReportOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: datetime = Field(alias="from", description="inclusive")
    to: datetime = Field(description="exclusive")
    group_by: GroupBy
    rows: list[MarginRow]
    totals: list[MarginRow] = Field(description="one row per currency (key null): never summed across them")
