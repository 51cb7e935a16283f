"""A vendor's wallet statement for a period of UTC days, as JSON (balances, totals, a page of entries) or
as a CSV of all the period's entries. One implementation behind the vendor's and the admins' route."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal

from fastapi import Depends, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.pagination import PageParams
from api.periods import day_window
from api.schemas.orders import LedgerEntryOut
from api.schemas.statements import EntryTypeTotal, StatementEntryOut, StatementOut
from ttelgo.errors import AppError
from ttelgo.ledger.statements import PeriodSummary, entries_query, find_wallet, summarize
from ttelgo.models import Vendor, VendorLedgerEntry
from ttelgo.money import to_major

DEFAULT_DAYS = 31
MAX_DAYS = 366
MAX_CSV_ROWS = 100_000
"""A CSV export beyond this many entries is refused (ask for a shorter period) rather than cut short."""
EARLIEST = date(2000, 1, 1)
_CSV_BATCH = 500
# Spreadsheets run a cell that starts with one of these as a formula; free text gets a leading quote.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CSV_COLUMNS = (
    "entry_id",
    "created_at",
    "entry_type",
    "currency",
    "amount_minor",
    "amount",
    "posted_minor",
    "posted",
    "balance_after_minor",
    "balance_after",
    "available_after_minor",
    "available_after",
    "order_id",
    "transfer_id",
    "description",
)
CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the statement; with format=csv, every entry of the period, oldest first",
        "content": {"text/csv": {"schema": {"type": "string"}}},
    }
}


@dataclass(frozen=True)
class Period:
    first: date
    last: date
    format: Literal["json", "csv"]

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first, time(), UTC)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.last + timedelta(days=1), time(), UTC)


def _period(
    from_: Annotated[
        date | None,
        Query(
            alias="from",
            description=f"first day (UTC), inclusive; default: the {DEFAULT_DAYS} days ending on `to`",
        ),
    ] = None,
    to: Annotated[date | None, Query(description="last day (UTC), inclusive; default: today")] = None,
    format: Annotated[
        Literal["json", "csv"], Query(description="csv: every entry of the period as a CSV attachment")
    ] = "json",
) -> Period:
    first, last = day_window(
        from_, to, default_days=DEFAULT_DAYS, max_days=MAX_DAYS, noun="a statement", earliest=EARLIEST
    )
    return Period(first, last, format)


StatementPeriod = Annotated[Period, Depends(_period)]


async def read_statement(
    request: Request, vendor_id: uuid.UUID, period: Period, paging: PageParams
) -> StatementOut | StreamingResponse:
    """The statement of the vendor's wallet (in the vendor's currency) for `period`."""
    sessions: async_sessionmaker[AsyncSession] = request.app.state.sessions
    async with _snapshot(sessions) as session:
        # Deactivated vendors keep their history, so this reads them too (callers decide who may ask).
        vendor = await session.get(Vendor, vendor_id)
        if vendor is None:
            raise AppError("VENDOR_NOT_FOUND", f"no vendor {vendor_id}")
        wallet = await find_wallet(session, vendor.id, vendor.currency)
        summary = (
            await summarize(session, wallet.id, period.start, period.end) if wallet else PeriodSummary.empty()
        )
        if period.format == "csv":
            if summary.count > MAX_CSV_ROWS:
                raise AppError(
                    "VALIDATION_ERROR",
                    f"the period has {summary.count} entries; a CSV holds at most {MAX_CSV_ROWS}: "
                    "ask for a shorter period",
                )
            filename = f"statement-{vendor.id}-{period.first}-{period.last}.csv"
            return StreamingResponse(
                _csv(sessions, wallet.id if wallet else None, period),
                media_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": f'attachment; filename="{filename}"'},
            )
        items: list[StatementEntryOut] = []
        if wallet is not None:
            page = entries_query(wallet.id, period.start, period.end)
            rows = await session.execute(
                page.limit(paging.page_size).offset((paging.page - 1) * paging.page_size)
            )
            items = [_entry(entry, posted) for entry, posted in rows]
    return StatementOut(
        vendor_id=vendor.id,
        currency=vendor.currency,
        from_=period.first,
        to=period.last,
        period_start=period.start,
        period_end=period.end,
        opening_balance_minor=summary.opening_balance_minor,
        closing_balance_minor=summary.closing_balance_minor,
        held_at_close_minor=summary.held_at_close_minor,
        totals=[EntryTypeTotal(**total.__dict__) for total in summary.totals],
        items=items,
        page=paging.page,
        page_size=paging.page_size,
        total=summary.count,
    )


class _snapshot:
    """A session whose reads all see one snapshot (REPEATABLE READ), so balances, totals and entries agree
    while transfers keep committing."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._session = sessions()

    async def __aenter__(self) -> AsyncSession:
        await self._session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        return self._session

    async def __aexit__(self, *exc: object) -> None:
        await self._session.close()


def _entry(entry: VendorLedgerEntry, posted_minor: int) -> StatementEntryOut:
    return StatementEntryOut(**LedgerEntryOut.model_validate(entry).model_dump(), posted_minor=posted_minor)


async def _csv(
    sessions: async_sessionmaker[AsyncSession], account_id: uuid.UUID | None, period: Period
) -> AsyncIterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    if account_id is not None:
        query = entries_query(account_id, period.start, period.end, newest_first=False).limit(MAX_CSV_ROWS)
        async with _snapshot(sessions) as session:
            result = await session.stream(query.execution_options(yield_per=_CSV_BATCH))
            async for batch in result.partitions(_CSV_BATCH):
                writer.writerows(_csv_row(entry, posted) for entry, posted in batch)
                yield _drain(buffer)
    yield _drain(buffer)


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


def _csv_row(entry: VendorLedgerEntry, posted_minor: int) -> Iterable[object]:
    def major(minor: int) -> str:
        return str(to_major(minor, entry.currency))

    description = entry.description or ""
    if description.startswith(_FORMULA_STARTS):
        description = "'" + description
    return (
        entry.id,
        entry.created_at.astimezone(UTC).isoformat(),
        entry.entry_type.value,
        entry.currency,
        entry.amount_minor,
        major(entry.amount_minor),
        posted_minor,
        major(posted_minor),
        entry.balance_after_minor,
        major(entry.balance_after_minor),
        entry.available_after_minor,
        major(entry.available_after_minor),
        entry.order_id or "",
        entry.transfer_id,
        description,
    )
