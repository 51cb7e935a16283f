"""The hot `webhook_events` writes, group-committed: recording an event, and marking it DELIVERED.

Each caller still waits until its own row is written and committed, as with a statement of its own; but
while one statement of a kind is in flight, the events that arrive meanwhile wait and go together in the
next one. Under load a process pays one connection checkout and one round trip per batch instead of per
event (per event, they and the connections their bursts opened past the pool's size were about a third of a
signalled event's API CPU), and each kind holds at most one pooled connection.

Failures stay with the event that caused them. A batch that PostgreSQL refuses (an error it answers, so
nothing of the statement stands: a payload jsonb rejects, such as NaN or a lone surrogate, which Python's
JSON accepts) is rerun one item after another, so only the bad event's caller fails (500) and its
batch-mates are stored. A batch that fails otherwise (the database down, the connection lost, or past
STATEMENT_LIMIT_S) fails every caller in it: it may have committed without our hearing, and a rerun would
then tell each caller "stored before" and its event would never be handed on; answered 500, each is
delivered again, as one failed statement's caller was before.

One row per event stays the unique (provider, event_id)'s: `ON CONFLICT DO NOTHING` inserts an event once
however many deliveries race, in one batch or in several processes.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import uuid
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ttelgo.db import autocommit
from ttelgo.models import WebhookEventStatus

Item = TypeVar("Item")
Result = TypeVar("Result")

# A batch takes milliseconds. Past this, something holds one of its rows (an eSIM Go activity's transaction)
# or its connection is dead; every event behind it waits meanwhile, so it fails (each caller answers 500 and
# is delivered again) rather than stall the process's intake. A caller waits at most twice this: the batch
# in flight, then its own.
STATEMENT_LIMIT_S = 10.0
# SQLSTATE classes that an item's own values cause: data exception, integrity constraint violation.
_ITEM_ERRORS = ("22", "23")


@dataclass(frozen=True)
class NewEvent:
    """A row to record; `ignored_because` stores it IGNORED at once (nothing acts on it)."""

    provider: str
    event_id: str
    event_type: str
    payload: dict[str, Any]
    target_workflow_id: str | None
    ignored_because: str | None = None


# Arrays, not a multi-row VALUES or an expanding IN: one statement text whatever the batch's size, so
# asyncpg prepares it once per connection. Rows go in key order, so that two processes' batches that share
# an event (a racing redelivery) wait on each other in the same order and never deadlock.
_INSERT = text(
    "INSERT INTO webhook_events "
    "(id, provider, event_id, event_type, payload, target_workflow_id, status, error, processed_at) "
    "SELECT id, provider, event_id, event_type, CAST(payload AS jsonb), target_workflow_id, status, error, "
    "processed_at FROM unnest(CAST(:ids AS uuid[]), CAST(:providers AS text[]), CAST(:event_ids AS text[]), "
    "CAST(:types AS text[]), CAST(:payloads AS text[]), CAST(:targets AS text[]), CAST(:statuses AS text[]), "
    "CAST(:errors AS text[]), CAST(:processed AS timestamptz[])) "
    "AS r(id, provider, event_id, event_type, payload, target_workflow_id, status, error, processed_at) "
    "ORDER BY provider, event_id "
    "ON CONFLICT (provider, event_id) DO NOTHING RETURNING provider, event_id"
)
# Rows locked in key order first, for the same reason (two processes may mark the same events: racing
# hand-ons of a redelivery); the UPDATE alone would lock them in join order.
_MARK_DELIVERED = text(
    "WITH d AS (SELECT w.id FROM webhook_events AS w "
    "JOIN unnest(CAST(:providers AS text[]), CAST(:event_ids AS text[])) AS k(provider, event_id) "
    "ON w.provider = k.provider AND w.event_id = k.event_id ORDER BY w.provider, w.event_id FOR UPDATE OF w) "
    "UPDATE webhook_events AS w SET status = :delivered, error = NULL, processed_at = :at FROM d WHERE w.id = d.id"
)


async def _insert(connection: AsyncConnection, events: list[NewEvent]) -> list[bool]:
    """Whether each event was stored now (False: stored before, or by an earlier caller of this batch)."""
    at = datetime.now(UTC)
    first = list({(e.provider, e.event_id): e for e in reversed(events)}.values())  # one per key
    rows = await connection.execute(
        _INSERT,
        {
            "ids": [uuid.uuid4() for _ in first],
            "providers": [e.provider for e in first],
            "event_ids": [e.event_id for e in first],
            "types": [e.event_type for e in first],
            "payloads": [json.dumps(e.payload) for e in first],
            "targets": [e.target_workflow_id for e in first],
            "statuses": [
                (WebhookEventStatus.IGNORED if e.ignored_because else WebhookEventStatus.RECEIVED).value
                for e in first
            ],
            "errors": [e.ignored_because for e in first],
            "processed": [at if e.ignored_because else None for e in first],
        },
    )
    stored = {(provider, event_id) for provider, event_id in rows}
    winners = {id(e) for e in first if (e.provider, e.event_id) in stored}
    return [id(e) in winners for e in events]


async def _mark_delivered(connection: AsyncConnection, keys: list[tuple[str, str]]) -> list[None]:
    await connection.execute(
        _MARK_DELIVERED,
        {
            "delivered": WebhookEventStatus.DELIVERED.value,
            "at": datetime.now(UTC),
            "providers": [provider for provider, _ in keys],
            "event_ids": [event_id for _, event_id in keys],
        },
    )
    return [None for _ in keys]


Statement = Callable[[AsyncConnection, list[Item]], Awaitable[list[Result]]]


class _GroupCommit(Generic[Item, Result]):
    """One statement of a kind in flight at a time; what queues meanwhile goes in the next, each caller
    answered with its own item's result."""

    def __init__(self, statement: Statement[Item, Result]) -> None:
        self.statement = statement
        self.waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        self.flusher: asyncio.Task[None] | None = None

    async def submit(self, engine: AsyncEngine, item: Item) -> Result:
        answer: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self.waiting.append((item, answer))
        if self.flusher is None or self.flusher.done():
            # A context of its own: the flusher serves many requests, so its logs must not carry the request
            # id (or audit values) of the one that happened to start it.
            self.flusher = asyncio.create_task(self._flush(engine), context=contextvars.Context())
        # The batch runs in the flusher's task: a caller that goes away does not stop it, and what it queued
        # is written anyway.
        return await answer

    async def _flush(self, engine: AsyncEngine) -> None:
        while self.waiting:
            batch, self.waiting = self.waiting, []
            await self._send(engine, batch)

    async def _send(self, engine: AsyncEngine, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            async with asyncio.timeout(STATEMENT_LIMIT_S), autocommit(engine) as connection:
                results = await self.statement(connection, [item for item, _ in batch])
        except Exception as exc:
            if len(batch) > 1 and _refused_item(exc):
                for one in batch:  # one after another, in this batch's connection slot
                    await self._send(engine, [one])
                return
            for _, answer in batch:
                if not answer.done():
                    answer.set_exception(exc)
            return
        except BaseException:  # cancelled (the loop shutting down): nobody is left hanging
            for _, answer in batch:
                answer.cancel()
            raise
        for (_, answer), result in zip(batch, results, strict=True):
            if not answer.done():
                answer.set_result(result)


def _refused_item(exc: Exception) -> bool:
    """PostgreSQL refused the statement for an item's values. It answered, so the statement was rolled back
    and nothing of it stands: rerunning its items alone is safe, and isolates the bad one."""
    sqlstate = getattr(exc.orig, "sqlstate", None) if isinstance(exc, DBAPIError) else None
    return isinstance(sqlstate, str) and sqlstate[:2] in _ITEM_ERRORS


@dataclass
class _Writers:
    loop: asyncio.AbstractEventLoop
    record: _GroupCommit[NewEvent, bool]
    mark: _GroupCommit[tuple[str, str], None]


# One set per engine (one database) and event loop, like the ledger's batcher. The engine is not kept in
# them (only by a flush in progress), so an engine dropped elsewhere takes its entry with it.
_WRITERS: weakref.WeakKeyDictionary[AsyncEngine, _Writers] = weakref.WeakKeyDictionary()


def _writers(engine: AsyncEngine) -> _Writers:
    loop = asyncio.get_running_loop()
    writers = _WRITERS.get(engine)
    if writers is None or writers.loop is not loop:
        writers = _WRITERS[engine] = _Writers(loop, _GroupCommit(_insert), _GroupCommit(_mark_delivered))
    return writers


async def record(engine: AsyncEngine, event: NewEvent) -> bool:
    """Stores the event unless it is stored already: whether this call stored it (committed on return)."""
    return await _writers(engine).record.submit(engine, event)


async def mark_delivered(engine: AsyncEngine, provider: str, event_id: str) -> None:
    """The event's row says DELIVERED when this returns."""
    await _writers(engine).mark.submit(engine, (provider, event_id))
