"""Webhook rows are group-committed (issue 16): concurrent events share statements, and each caller still
gets its own answer: one row and one "stored now" per event id however many deliveries race, in one batch
or in two processes; an IGNORED event stored finished. An event PostgreSQL refuses fails alone; a batch
stuck on a locked row fails within the limit; a failed batch leaves no stray error for a caller that went
away; the flush does not log under its first caller's request id."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from ttelgo.db import create_engine
from ttelgo.models import WebhookEvent, WebhookEventStatus
from ttelgo.observability import request_id_var
from ttelgo.payments import webhook_rows
from ttelgo.payments.webhook_rows import NewEvent, mark_delivered, record


@pytest.fixture
async def engines(database_url: str) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    """Two engines on one database: two API processes."""
    one, other = create_engine(database_url), create_engine(database_url)
    yield one, other
    await one.dispose()
    await other.dispose()


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How many INSERT and UPDATE statements the writers send (counted for writers made from now on)."""
    counts = {"insert": 0, "mark": 0}

    def counting(name: str, real):  # type: ignore[no-untyped-def]
        async def statement(connection, items):  # type: ignore[no-untyped-def]
            counts[name] += 1
            return await real(connection, items)

        return statement

    monkeypatch.setattr(webhook_rows, "_insert", counting("insert", webhook_rows._insert))
    monkeypatch.setattr(webhook_rows, "_mark_delivered", counting("mark", webhook_rows._mark_delivered))
    return counts


def _event(n: int, *, ignored: bool = False, payload: dict[str, Any] | None = None) -> NewEvent:
    why = "event type not handled" if ignored else None
    body = {"id": f"evt_{n}"} if payload is None else payload
    return NewEvent("stripe", f"evt_{n}", "payment_intent.processing", body, f"wf-{n}", why)


async def _rows(engine: AsyncEngine) -> dict[str, WebhookEvent]:
    async with engine.connect() as connection:
        rows = (await connection.execute(select(WebhookEvent))).all()
    return {row.event_id: row for row in rows}


async def test_racing_deliveries_share_statements_and_store_each_event_once(
    engines: tuple[AsyncEngine, AsyncEngine], statements: dict[str, int]
) -> None:
    one, other = engines
    # Each of 20 events delivered three times to one process and twice to the other, all at once; 10
    # events nothing acts on, once each.
    calls = [(engine, _event(n)) for n in range(20) for engine in (one, one, other, one, other)]
    calls += [(one, _event(n, ignored=True)) for n in range(20, 30)]
    stored = await asyncio.gather(*(record(engine, event) for engine, event in calls))

    by_event: dict[str, list[bool]] = {}
    for (_, event), now in zip(calls, stored, strict=True):
        by_event.setdefault(event.event_id, []).append(now)
    assert all(answers.count(True) == 1 for answers in by_event.values()), by_event
    rows = await _rows(one)
    assert sorted(rows) == sorted(by_event)
    assert {rows[f"evt_{n}"].status for n in range(20)} == {WebhookEventStatus.RECEIVED}
    assert rows["evt_3"].payload == {"id": "evt_3"} and rows["evt_3"].target_workflow_id == "wf-3"
    for n in range(20, 30):
        row = rows[f"evt_{n}"]
        assert row.status is WebhookEventStatus.IGNORED and row.error == "event type not handled"
        assert row.processed_at is not None
    assert statements["insert"] <= len(calls) // 4, statements
    # Alone, an event is stored at once; again, it is known.
    assert await record(one, _event(99)) is True
    assert await record(other, _event(99)) is False


async def test_marks_share_statements_and_each_row_says_delivered(
    engines: tuple[AsyncEngine, AsyncEngine], statements: dict[str, int]
) -> None:
    one, _ = engines
    await asyncio.gather(*(record(one, _event(n)) for n in range(40)))
    await asyncio.gather(*(mark_delivered(one, "stripe", f"evt_{n}") for n in range(30)))

    rows = await _rows(one)
    assert {rows[f"evt_{n}"].status for n in range(30)} == {WebhookEventStatus.DELIVERED}
    assert all(rows[f"evt_{n}"].processed_at is not None for n in range(30))
    assert {rows[f"evt_{n}"].status for n in range(30, 40)} == {WebhookEventStatus.RECEIVED}
    assert statements["mark"] <= 30 // 4, statements


async def test_an_event_postgresql_refuses_fails_alone_and_its_batch_mates_are_stored(
    engines: tuple[AsyncEngine, AsyncEngine], statements: dict[str, int]
) -> None:
    one, _ = engines
    # Signed bodies can carry both (Python's JSON reads them); jsonb refuses them.
    nan = {"amount": float("nan")}
    surrogate = json.loads('{"name": "\\ud800"}')
    calls = [
        _event(0),
        _event(1, payload=nan),
        _event(2),
        _event(3, payload=surrogate),
        _event(4),
        _event(0),  # a racing redelivery in the same batch
    ]
    answers = await asyncio.gather(*(record(one, event) for event in calls), return_exceptions=True)

    assert isinstance(answers[1], DBAPIError) and isinstance(answers[3], DBAPIError), answers
    assert [answers[n] for n in (0, 2, 4, 5)] == [True, True, True, False], answers
    assert sorted(await _rows(one)) == ["evt_0", "evt_2", "evt_4"]
    assert statements["insert"] == 1 + len(calls), statements  # the refused batch, then each alone


async def test_a_batch_stuck_on_a_locked_row_fails_within_the_limit_and_the_next_one_runs(
    engines: tuple[AsyncEngine, AsyncEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    one, other = engines
    monkeypatch.setattr(webhook_rows, "STATEMENT_LIMIT_S", 0.5)
    await asyncio.gather(*(record(one, _event(n)) for n in range(5)))
    async with other.connect() as holder:  # another transaction holds evt_2's row (an activity's session)
        await holder.execute(text("SELECT 1 FROM webhook_events WHERE event_id = 'evt_2' FOR UPDATE"))
        async with asyncio.timeout(10):  # without a limit, the marks would wait for the holder forever
            answers = await asyncio.gather(
                *(mark_delivered(one, "stripe", f"evt_{n}") for n in range(5)), return_exceptions=True
            )
        assert all(isinstance(answer, TimeoutError) for answer in answers), answers
        # The statement was cancelled in PostgreSQL too: nothing waits for the holder any more.
        waiting = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        assert (await holder.execute(text(waiting))).scalar_one() == 0
        await holder.rollback()
    rows = await _rows(one)
    assert {rows[f"evt_{n}"].status for n in range(5)} == {WebhookEventStatus.RECEIVED}

    await asyncio.gather(*(mark_delivered(one, "stripe", f"evt_{n}") for n in range(5)))
    rows = await _rows(one)
    assert {rows[f"evt_{n}"].status for n in range(5)} == {WebhookEventStatus.DELIVERED}


async def test_a_caller_that_goes_away_leaves_its_row_written_and_no_stray_error(
    engines: tuple[AsyncEngine, AsyncEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    one, _ = engines
    callers = [asyncio.create_task(record(one, _event(n))) for n in range(4)]
    await asyncio.sleep(0)  # all four queued
    callers[1].cancel()  # its client disconnected
    answers = await asyncio.gather(*callers, return_exceptions=True)
    assert isinstance(answers[1], asyncio.CancelledError)
    assert [answers[n] for n in (0, 2, 3)] == [True, True, True]
    assert sorted(await _rows(one)) == [f"evt_{n}" for n in range(4)]
    assert await record(one, _event(1)) is False  # its redelivery finds it

    # When such a batch fails, every caller still there gets the error; the one that left is not handed
    # an exception nobody will retrieve (asyncio would log it, with a traceback, once per such caller).
    sent: list[asyncio.Future[bool]] = []
    send = webhook_rows._GroupCommit._send

    async def noting(self, engine, batch):  # type: ignore[no-untyped-def]
        sent.extend(answer for _, answer in batch)
        await send(self, engine, batch)

    monkeypatch.setattr(webhook_rows._GroupCommit, "_send", noting)
    unreachable = create_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    try:
        callers = [asyncio.create_task(record(unreachable, _event(n))) for n in range(3)]
        await asyncio.sleep(0)
        callers[0].cancel()
        answers = await asyncio.gather(*callers, return_exceptions=True)
    finally:
        await unreachable.dispose()
    assert isinstance(answers[0], asyncio.CancelledError)
    assert all(isinstance(answer, OSError) for answer in answers[1:]), answers
    assert len(sent) == 3 and sent[0].cancelled()


async def test_the_flush_runs_outside_its_first_callers_request_context(
    engines: tuple[AsyncEngine, AsyncEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    one, _ = engines
    seen: list[str] = []
    insert = webhook_rows._insert

    async def noting(connection, items):  # type: ignore[no-untyped-def]
        seen.append(request_id_var.get())
        return await insert(connection, items)

    monkeypatch.setattr(webhook_rows, "_insert", noting)
    request_id_var.set("req-first")
    assert await record(one, _event(1)) is True
    assert seen == ["-"]
