"""Admin: business reports read from the ledger and the order records."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import AwareDatetime

from api.deps import Admin, Session
from api.periods import instant_window
from api.schemas.reports import MarginReportOut, MarginRow
from ttelgo.ledger.margin import GroupBy, MarginLine, margin_report

router = APIRouter(prefix="/api/v1/admin/reports", tags=["admin: reports"])

DEFAULT_PERIOD = timedelta(days=30)
MAX_PERIOD = timedelta(days=366)


def _row(line: MarginLine) -> MarginRow:
    return MarginRow(
        key=line.key,
        currency=line.currency,
        revenue_minor=line.revenue_minor,
        refunds_minor=line.refunds_minor,
        supplier_cost_minor=line.supplier_cost_minor,
        supplier_credits_minor=line.supplier_credits_minor,
        margin_minor=line.margin_minor,
    )


@router.get(
    "/margin",
    response_model=MarginReportOut,
    response_model_by_alias=True,
    summary="Revenue, refunds, supplier cost and margin over a period, in minor units per currency",
)
async def margin(
    admin: Admin,
    session: Session,
    from_: Annotated[
        AwareDatetime | None, Query(alias="from", description="inclusive; default: 30 days before 'to'")
    ] = None,
    to: Annotated[AwareDatetime | None, Query(description="exclusive; default: now")] = None,
    group_by: GroupBy = GroupBy.CHANNEL,
) -> MarginReportOut:
    start, end = instant_window(from_, to, default=DEFAULT_PERIOD, maximum=MAX_PERIOD)
    report = await margin_report(session, start, end, group_by)
    return MarginReportOut(
        from_=start,
        to=end,
        group_by=group_by,
        rows=[_row(line) for line in report.lines],
        totals=[_row(line) for line in report.totals],
    )
