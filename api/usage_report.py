"""A vendor's API usage by day and endpoint, read from `api_usage_logs` (vendor and admin views)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Date, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.periods import day_window
from api.schemas.usage import UsageReport, UsageRow
from ttelgo.models import ApiUsageLog

DEFAULT_DAYS = 7
MAX_DAYS = 92


async def usage_report(
    session: AsyncSession, vendor_id: uuid.UUID, first: date | None, last: date | None
) -> UsageReport:
    first, last = day_window(first, last, default_days=DEFAULT_DAYS, max_days=MAX_DAYS)
    day = cast(func.timezone("UTC", ApiUsageLog.created_at), Date).label("day")
    status = ApiUsageLog.status_code
    query = (
        select(
            day,
            ApiUsageLog.method,
            ApiUsageLog.path,
            func.count(),
            func.count().filter(status >= 400),
            func.count().filter(status.between(400, 499)),
            func.count().filter(status >= 500),
            func.avg(ApiUsageLog.duration_ms),
            func.percentile_cont(0.95).within_group(ApiUsageLog.duration_ms),
        )
        .where(
            ApiUsageLog.vendor_id == vendor_id,
            ApiUsageLog.created_at >= datetime.combine(first, time(), UTC),
            ApiUsageLog.created_at < datetime.combine(last + timedelta(days=1), time(), UTC),
        )
        .group_by(day, ApiUsageLog.method, ApiUsageLog.path)
        .order_by(day.desc(), ApiUsageLog.path, ApiUsageLog.method)
    )
    rows = (await session.execute(query)).all()
    items = [
        UsageRow(
            day=row[0],
            method=row[1],
            endpoint=row[2],
            requests=row[3],
            errors=row[4],
            client_errors=row[5],
            server_errors=row[6],
            avg_latency_ms=round(float(row[7]), 1),
            p95_latency_ms=round(float(row[8]), 1),
        )
        for row in rows
    ]
    return UsageReport(vendor_id=vendor_id, from_=first, to=last, items=items)
