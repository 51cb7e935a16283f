"""The vendor API usage log (`api_usage_logs`): every call by a vendor's API key or team member, with its
route template, status and latency.

Rows are buffered in the process and written in batches by a background task (when BATCH_SIZE are
waiting, or FLUSH_INTERVAL_S after the oldest, and at shutdown), so a request never waits on the write; a
failed write is logged and its rows dropped, never an error for a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.types import ASGIApp, Receive, Scope, Send

from api.middleware import ResponseStatus
from ttelgo.models import ApiUsageLog

log = logging.getLogger(__name__)
BATCH_SIZE = 500
FLUSH_INTERVAL_S = 2.0
MAX_BUFFERED = 50_000  # if the database is away for long, the oldest rows go first


class UsageRecorder:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        batch_size: int = BATCH_SIZE,
        flush_interval_s: float = FLUSH_INTERVAL_S,
    ) -> None:
        self._sessions = sessions
        self._batch_size = batch_size
        self._flush_interval_s = flush_interval_s
        self._rows: list[dict[str, Any]] = []
        self._full = asyncio.Event()
        self._closing = False
        self._task = asyncio.create_task(self._run(), name="api-usage-writer")

    def record(self, **row: Any) -> None:
        self._rows.append(row)
        if len(self._rows) > MAX_BUFFERED:
            del self._rows[: len(self._rows) - MAX_BUFFERED]
        if len(self._rows) >= self._batch_size:
            self._full.set()

    async def _run(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), self._flush_interval_s)
            self._full.clear()
            await self.flush()

    async def flush(self) -> None:
        while self._rows:
            batch, self._rows = self._rows[: self._batch_size], self._rows[self._batch_size :]
            try:
                async with self._sessions() as session, session.begin():
                    await session.execute(insert(ApiUsageLog), batch)
            except Exception as exc:  # usage is a report: losing a batch must never fail the API
                log.warning(
                    "dropped %d API usage rows: %s: %s", len(batch), type(exc).__name__, str(exc)[:200]
                )

    async def close(self) -> None:
        """Lets a write under way finish (cancelling it would lose its batch, already out of the buffer),
        then writes what is left."""
        self._closing = True
        self._full.set()
        await self._task
        await self.flush()


class UsageMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        recorder: UsageRecorder | None = (
            getattr(scope["app"].state, "usage", None) if scope["type"] == "http" else None
        )
        if recorder is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = ResponseStatus(send)
        try:
            await self.app(scope, receive, status.send)
        finally:
            # After the answer has gone: known callers cost nothing here, unknown ones one cached read.
            caller = await scope["app"].state.callers.identify(scope)
            if caller is not None and caller.kind == "vendor" and status.code != 401:
                recorder.record(
                    vendor_id=caller.vendor_id,
                    api_key_id=caller.api_key_id,
                    method=scope["method"][:10],
                    path=getattr(scope.get("route"), "path", "unmatched"),
                    status_code=status.code,
                    duration_ms=round((time.perf_counter() - started) * 1000),
                    request_id=scope.get("state", {}).get("request_id"),
                    created_at=datetime.now(UTC),
                )
