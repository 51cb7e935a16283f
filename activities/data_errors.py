"""Bad data is not a transient fault: an activity that fails because the database refuses a value (a NUL in
a text, a number beyond BIGINT, a string longer than its column) fails for good (a non-retryable
ApplicationError), so its workflow compensates or records the failure instead of retrying for ever.
Everything else (connections lost, timeouts, deadlocks) stays retryable, as Temporal's policy says."""

from __future__ import annotations

from typing import Any

import asyncpg
from temporalio.exceptions import ApplicationError
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

BAD_DATA = "BAD_DATA"
DATA_EXCEPTION_CLASS = "22"  # SQLSTATE class 22: data exception


def caused_by_data(exc: BaseException) -> bool:
    """Whether the database (or its driver, refusing an argument) rejected a value, looking through what
    `exc` was raised from (SQLAlchemy keeps the driver's error in `orig`)."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, asyncpg.PostgresError) and str(current.sqlstate).startswith(
            DATA_EXCEPTION_CLASS
        ):
            return True
        if isinstance(current, asyncpg.InterfaceError) and isinstance(current, ValueError):
            return True  # asyncpg's own DataError: an argument it cannot encode (an int beyond int64)
        orig = getattr(current, "orig", None)
        pending += [orig if isinstance(orig, BaseException) else None, current.__cause__]
    return False


class BadDataInterceptor(Interceptor):
    """Every activity of a worker with this interceptor fails for good, not for ever, on data the database
    refuses."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _FailBadData(next)


class _FailBadData(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        try:
            return await super().execute_activity(input)
        except ApplicationError:
            raise
        except Exception as exc:
            if not caused_by_data(exc):
                raise
            raise ApplicationError(
                f"the data cannot be stored: {type(exc).__name__}", type=BAD_DATA, non_retryable=True
            ) from exc
