"""Vendor API: my API usage, by day and endpoint (requests, errors, latency)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import AnyVendor, Session
from api.schemas.usage import UsageReport
from api.usage_report import MAX_DAYS, usage_report

router = APIRouter(prefix="/api/v1/vendor", tags=["vendor: account"])


@router.get(
    "/usage",
    response_model=UsageReport,
    response_model_by_alias=True,
    summary=f"My API calls by day (UTC) and endpoint; the last 7 days unless `from`/`to` say (≤ {MAX_DAYS} days)",
)
async def my_usage(
    caller: AnyVendor,
    session: Session,
    from_: Annotated[date | None, Query(alias="from")] = None,
    to: date | None = None,
) -> UsageReport:
    return await usage_report(session, caller.vendor_id, from_, to)
