"""The `from`/`to` windows that reports and statements take: defaults, order and a maximum span, checked
the same way everywhere (422 VALIDATION_ERROR with the reason)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import TypeVar

from ttelgo.errors import AppError

Moment = TypeVar("Moment", date, datetime)
# Callers turn a day into the instant after it (`day + 1 day`): the calendar's last year cannot be.
LAST_DAY = date(9998, 12, 31)


def day_window(
    first: date | None,
    last: date | None,
    *,
    default_days: int,
    max_days: int,
    noun: str = "a report",
    earliest: date | None = None,
) -> tuple[date, date]:
    """Whole UTC days, both inclusive; `last` defaults to today, `first` to `default_days` ending on it.
    With `earliest`, given days must lie between it and today; none may lie past LAST_DAY."""
    today = datetime.now(UTC).date()
    for name, day in (("from", first), ("to", last)):
        if day is not None and day > LAST_DAY:
            raise AppError("VALIDATION_ERROR", f"'{name}' must be a day up to {LAST_DAY}")
    if earliest is not None:
        for name, day in (("from", first), ("to", last)):
            if day is not None and not earliest <= day <= today:
                raise AppError("VALIDATION_ERROR", f"'{name}' must be a day from {earliest} to today (UTC)")
    last = last or today
    if first is None:
        first = max(earliest or date.min, _before(last, timedelta(days=default_days - 1), date.min))
    if first > last:
        raise AppError("VALIDATION_ERROR", "'from' is after 'to'")
    if (last - first).days >= max_days:
        raise AppError("VALIDATION_ERROR", f"{noun} covers at most {max_days} days")
    return first, last


def instant_window(
    start: datetime | None,
    end: datetime | None,
    *,
    default: timedelta,
    maximum: timedelta,
    noun: str = "a report",
) -> tuple[datetime, datetime]:
    """[start, end): `end` defaults to now, `start` to `default` before it."""
    end = end or datetime.now(UTC)
    if start is None:
        start = _before(end, default, datetime.min.replace(tzinfo=UTC))
    if start >= end:
        raise AppError("VALIDATION_ERROR", "'from' must be before 'to'")
    if end - start > maximum:
        raise AppError("VALIDATION_ERROR", f"{noun} covers at most {maximum.days} days")
    return start, end


def _before(moment: Moment, span: timedelta, floor: Moment) -> Moment:
    try:
        return moment - span
    except OverflowError:  # a moment near year 1: the window starts with the calendar
        return floor
