"""Batches of concurrent transfers (ttelgo/ledger/batches.py): each transfer keeps its own outcome, a failed
batch is rerun item by item within the in-flight bound, a cancelled queued caller's transfer is never sent,
and a deadlock between batches (platform-only ids in opposite order) is rerun.

Transfers are made to queue deterministically: another transaction holds the PREPAID wallet's row, so
two transfers of it fill both in-flight slots and wait; whatever is submitted meanwhile waits in the queue
and goes as one batch when the row is released."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.ledger.support import (
    CURRENCY,
    Books,
    balance,
    hold_spec,
    open_books,
    statement,
    topup_spec,
    violations,
)
from tests.support.stack import wait_for
from ttelgo import ledger
from ttelgo.db import create_engine, session_factory
from ttelgo.ledger import batches
from ttelgo.models import LedgerEntryType, Transfer, TransferKind, VendorLedgerEntry


@pytest.fixture
async def books(database_url: str) -> AsyncIterator[Books]:
    async with open_books(database_url) as opened:
        yield opened


@pytest.fixture
async def other(database_url: str) -> AsyncIterator[AsyncEngine]:
    """Another process's connections: the row lock that makes transfers queue, and the probes."""
    engine = create_engine(database_url, pool_size=2)
    try:
        yield engine
    finally:
        await engine.dispose()


async def until(check: Callable[[], Awaitable[bool]]) -> None:
    async with asyncio.timeout(60):  # a broken test fails instead of hanging
        await wait_for(check)


def lock_waiters(engine: AsyncEngine, expected: int) -> Callable[[], Awaitable[bool]]:
    """Whether `expected` sessions of this database wait for a lock."""

    async def check() -> bool:
        async with engine.connect() as probe:
            found = await probe.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
        return found == expected

    return check


def queued(books: Books, expected: int) -> Callable[[], Awaitable[bool]]:
    """Whether `expected` calls wait in this process's queue (not sent yet)."""

    async def check() -> bool:
        return len(batches._BATCHERS[books.sessions].waiting) == expected

    return check


@asynccontextmanager
async def slots_taken(books: Books, other: AsyncEngine) -> AsyncIterator[None]:
    """Both in-flight slots busy (two top-ups waiting for the PREPAID wallet's row) while the body
    submits; on exit the row is released and everything queued meanwhile goes as one batch."""
    async with other.connect() as holder:
        transaction = await holder.begin()
        await holder.execute(
            text("SELECT 1 FROM accounts WHERE id = :id FOR NO KEY UPDATE"), {"id": books.prepaid}
        )
        blockers = [
            asyncio.create_task(
                ledger.create_transfer(books.sessions, topup_spec(books, books.prepaid, 1, name))
            )
            for name in ("blocker-1", "blocker-2")
        ]
        await until(lock_waiters(other, batches.MAX_IN_FLIGHT))
        try:
            yield
        finally:
            await transaction.commit()
            await asyncio.gather(*blockers)


@contextmanager
def batch_sizes(books: Books) -> Iterator[list[int]]:
    """The number of items of each `ledger_apply` statement sent, in order."""
    sizes: list[int] = []
    engine = books.sessions.kw["bind"].sync_engine

    def record(conn: object, cursor: object, statement: str, parameters: Any, *args: object) -> None:
        if "ledger_apply" in statement:
            sizes.append(len(json.loads(parameters[0])))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sizes
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def submitted(books: Books, calls: list[Awaitable[Transfer]]) -> list[asyncio.Task[Transfer]]:
    """The calls started in order, each in the queue before the next starts."""
    tasks: list[asyncio.Task[Transfer]] = []
    for call in calls:
        tasks.append(asyncio.ensure_future(call))
        await until(queued(books, len(tasks)))
    return tasks


async def test_a_refusal_inside_a_batch_undoes_only_its_own_item(books: Books, other: AsyncEngine) -> None:
    await ledger.create_transfer(books.sessions, topup_spec(books, books.prepaid, 1000, "fund"))
    with batch_sizes(books) as sizes:
        async with slots_taken(books, other):
            tasks = await submitted(
                books,
                [
                    ledger.create_transfer(
                        books.sessions, hold_spec(books, books.prepaid, 400, f"h{n}"), pending=True
                    )
                    for n in range(4)
                ],
            )
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert sizes == [1, 1, 4]  # the blockers alone, then the four holds in one statement
    assert [type(o).__name__ for o in outcomes] == [
        "Transfer",
        "Transfer",
        "InsufficientFunds",
        "InsufficientFunds",
    ]
    # 1,000 + the blockers' 2; the refused holds left no transfer, no statement row, no held money.
    assert (await balance(books.sessions, books.prepaid)).available_minor == 1002 - 800
    async with books.sessions() as session:
        held = await session.scalars(select(Transfer.id).where(Transfer.kind == TransferKind.PENDING))
        assert sorted(held) == ["h0", "h1"]
    rows = await statement(books.sessions, books.prepaid)
    assert [row[0] for row in rows].count(LedgerEntryType.ORDER_HOLD) == 2
    assert await violations(books.sessions) == []


async def test_a_failed_batch_is_rerun_one_by_one_with_each_error_on_its_own_transfer(
    books: Books, other: AsyncEngine
) -> None:
    in_use = 0
    most_in_use = 0
    pool = books.sessions.kw["bind"].sync_engine.pool

    def checkout(*args: object) -> None:
        nonlocal in_use, most_in_use
        in_use += 1
        most_in_use = max(most_in_use, in_use)

    def checkin(*args: object) -> None:
        nonlocal in_use
        in_use -= 1

    good = [f"t{n}" for n in range(10)]
    calls = [
        ledger.create_transfer(books.sessions, topup_spec(books, books.prepaid, 10, name))
        for name in good[:5]
    ]
    # Not a refusal: a foreign-key violation (no such order) fails the whole statement.
    calls.append(
        ledger.create_transfer(
            books.sessions, topup_spec(books, books.prepaid, 10, "bad", order_id=uuid.uuid4())
        )
    )
    calls += [
        ledger.create_transfer(books.sessions, topup_spec(books, books.prepaid, 10, name))
        for name in good[5:]
    ]
    event.listen(pool, "checkout", checkout)
    event.listen(pool, "checkin", checkin)
    try:
        with batch_sizes(books) as sizes:
            async with slots_taken(books, other):
                tasks = await submitted(books, calls)
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        event.remove(pool, "checkout", checkout)
        event.remove(pool, "checkin", checkin)

    assert sizes == [1, 1, 11] + [1] * 11  # the batch failed, then each item alone
    assert most_in_use <= batches.MAX_IN_FLIGHT
    assert isinstance(outcomes[5], IntegrityError)
    assert [o.id for o in outcomes[:5] + outcomes[6:]] == good  # type: ignore[union-attr]
    assert (await balance(books.sessions, books.prepaid)).balance_minor == 2 + 100
    async with books.sessions() as session:
        assert await session.get(Transfer, "bad") is None
    assert await violations(books.sessions) == []


async def test_the_same_id_twice_in_one_batch_is_a_replay_or_a_conflict(
    books: Books, other: AsyncEngine
) -> None:
    with batch_sizes(books) as sizes:
        async with slots_taken(books, other):
            tasks = await submitted(
                books,
                [
                    ledger.create_transfer(books.sessions, topup_spec(books, books.prepaid, 5, "d")),
                    ledger.create_transfer(books.sessions, topup_spec(books, books.prepaid, 5, "x")),
                    ledger.create_transfer(books.sessions, topup_spec(books, books.prepaid, 5, "d")),
                    ledger.create_transfer(books.sessions, topup_spec(books, books.prepaid, 6, "d")),
                ],
            )
        first, x, again, conflict = await asyncio.gather(*tasks, return_exceptions=True)
    assert sizes == [1, 1, 4]
    assert isinstance(first, Transfer) and isinstance(again, Transfer) and isinstance(x, Transfer)
    assert (again.id, again.amount_minor, again.created_at) == (first.id, 5, first.created_at)
    assert isinstance(conflict, ledger.TransferConflict)
    assert conflict.extra == {"transfer_id": "d", "fields": ["amount_minor"]}
    async with books.sessions() as session:
        entries = await session.scalar(
            select(func.count()).select_from(VendorLedgerEntry).where(VendorLedgerEntry.transfer_id == "d")
        )
    assert entries == 1
    assert (await balance(books.sessions, books.prepaid)).balance_minor == 2 + 10
    assert await violations(books.sessions) == []


async def test_when_a_committed_batch_loses_its_answer_the_reruns_are_replays(
    books: Books, other: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    committed: list[list[Any]] = []
    real_apply = batches._apply

    async def answer_lost(sessions: Any, items: list[dict[str, Any]]) -> list[Any]:
        outcomes = await real_apply(sessions, items)
        if len(items) > 1 and not committed:
            committed.append(outcomes)
            raise ConnectionResetError("connection lost after COMMIT")
        return outcomes

    monkeypatch.setattr(batches, "_apply", answer_lost)
    await ledger.create_transfer(books.sessions, topup_spec(books, books.prepaid, 1000, "fund"))
    with batch_sizes(books) as sizes:
        async with slots_taken(books, other):
            tasks = await submitted(
                books,
                [
                    ledger.create_transfer(books.sessions, topup_spec(books, books.prepaid, 50, "top")),
                    ledger.create_transfer(
                        books.sessions, hold_spec(books, books.prepaid, 300, "hold"), pending=True
                    ),
                    ledger.create_transfer(
                        books.sessions, hold_spec(books, books.prepaid, 200, "other"), pending=True
                    ),
                ],
            )
        outcomes = await asyncio.gather(*tasks)
    assert sizes == [1, 1, 3, 1, 1, 1]
    # Each rerun returns the row the lost batch committed (same transaction time), nothing twice.
    assert [(t.id, t.created_at) for t in outcomes] == [(t.id, t.created_at) for t in committed[0]]
    assert (await balance(books.sessions, books.prepaid)).available_minor == 1002 + 50 - 500
    assert len(await statement(books.sessions, books.prepaid)) == 1 + 2 + 3
    assert await violations(books.sessions) == []


async def test_a_caller_cancelled_while_queued_never_has_its_transfer_sent(
    books: Books, other: AsyncEngine
) -> None:
    with batch_sizes(books) as sizes:
        async with slots_taken(books, other):
            kept, cancelled = await submitted(
                books,
                [
                    ledger.create_transfer(books.sessions, topup_spec(books, books.prepaid, 7, "kept")),
                    ledger.create_transfer(books.sessions, topup_spec(books, books.prepaid, 9, "cancelled")),
                ],
            )
            cancelled.cancel()
            with pytest.raises(asyncio.CancelledError):
                await cancelled
        assert (await kept).id == "kept"
    assert sizes == [1, 1, 1]
    async with books.sessions() as session:
        assert await session.get(Transfer, "cancelled") is None
    assert (await balance(books.sessions, books.prepaid)).balance_minor == 2 + 7
    assert await violations(books.sessions) == []


async def test_a_deadlock_on_platform_only_ids_is_rerun(books: Books, other: AsyncEngine) -> None:
    """Wallets are locked in id order up front; transfers touching no wallet are not, so another batch
    inserting the same ids in the opposite order deadlocks with this one. PostgreSQL aborts one (here this
    process's, whose wait began first) and the kernel reruns it: its items replay the other's rows."""
    deadlocks: list[str | None] = []
    engine = books.sessions.kw["bind"].sync_engine

    def record(context: Any) -> None:
        deadlocks.append(getattr(context.original_exception, "sqlstate", None))

    def sale(transfer_id: str) -> ledger.TransferSpec:
        return ledger.TransferSpec(
            id=transfer_id,
            debit_account_id=books.card,
            credit_account_id=books.revenue,
            amount_minor=100,
            currency=CURRENCY,
            code="card_sale",
            entry_type=LedgerEntryType.ADJUSTMENT,
        )

    def row(transfer_id: str) -> Transfer:
        return Transfer(
            id=transfer_id,
            kind=TransferKind.SINGLE,
            debit_account_id=books.card,
            credit_account_id=books.revenue,
            amount_minor=100,
            currency=CURRENCY,
            code="card_sale",
            metadata_={},
        )

    event.listen(engine, "handle_error", record)
    try:
        async with session_factory(other)() as theirs, theirs.begin():
            # Only this side's wait may detect the cycle, so the kernel's statement is the one aborted.
            await theirs.execute(text("SET LOCAL deadlock_timeout = '1min'"))
            async with slots_taken(books, other):
                theirs.add(row("p1"))
                await theirs.flush()  # p1 inserted, not committed
                tasks = await submitted(
                    books, [ledger.create_transfer(books.sessions, sale(name)) for name in ("p2", "p1")]
                )
            # The batch inserted p2 and waits for p1; inserting p2 here closes the cycle.
            await until(lock_waiters(other, 1))
            theirs.add(row("p2"))
            await theirs.flush()
        outcomes = await asyncio.gather(*tasks)
    finally:
        event.remove(engine, "handle_error", record)
    assert deadlocks == ["40P01"]
    assert [t.id for t in outcomes] == ["p2", "p1"]
    async with books.sessions() as session:
        stored = await session.scalar(
            select(func.count()).select_from(Transfer).where(Transfer.code == "card_sale")
        )
    assert stored == 2
    assert await violations(books.sessions) == []
