"""The cap on card payments left open: at most MAX_OPEN_UNPAID_ORDERS unpaid card orders per customer
(and open card top-ups per vendor). Each one holds a PaymentIntent and a workflow waiting out its payment
window, so a caller past the cap is refused before either exists.

Checked inside the idempotent handler, so a retry of a request that got through is replayed, never
refused. Concurrent creations cannot all slip past a count none of them has added to yet: the caller's
other creating requests still in flight (their Idempotency-Key records IN_PROGRESS) count as open too.
At the boundary two racing requests may both be refused (429, retry later); never both let through. No
lock or connection is held across the handler.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import Request
from sqlalchemy import ColumnElement, func, select

from api.idempotency import IN_PROGRESS_LEASE, idempotency_key
from ttelgo.errors import AppError
from ttelgo.models import IdempotencyRecord, IdempotencyState


async def refuse_past_open_payment_cap(
    request: Request, *, scope: str, open_now: ColumnElement[int], what: str
) -> None:
    """Raises TOO_MANY_UNPAID_ORDERS if `scope` (the idempotency scope, e.g. "user:<id>") already has the
    cap: `open_now` counts what is open, apart from what this request itself creates."""
    cap = request.app.state.settings.max_open_unpaid_orders
    in_flight = (
        select(func.count())
        .select_from(IdempotencyRecord)
        .where(
            IdempotencyRecord.scope == scope,
            IdempotencyRecord.path == request.url.path,
            IdempotencyRecord.key != idempotency_key(request),
            IdempotencyRecord.state == IdempotencyState.IN_PROGRESS,
            IdempotencyRecord.updated_at > datetime.now(UTC) - IN_PROGRESS_LEASE,  # not abandoned
        )
        .scalar_subquery()
    )
    async with request.app.state.sessions() as session:
        count = await session.scalar(select(open_now + in_flight)) or 0
    if count >= cap:
        raise AppError(
            "TOO_MANY_UNPAID_ORDERS",
            f"you have {count} unpaid {what} or requests creating them (at most {cap}); pay or cancel one first",
            extra={"limit": cap},
            headers={"Retry-After": "5"},
        )
