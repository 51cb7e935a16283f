"""Throughput by construction (issue 16): a transfer is one statement, and it never waits for a platform
account (no floor, so nothing to guard: their totals are derived from the transfers)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from sqlalchemy import event, select, text

from tests.ledger.support import Books, hold_spec, open_books, topup_spec, totals, violations
from ttelgo import ledger
from ttelgo.models import Account


@pytest.fixture
async def books(database_url: str) -> AsyncIterator[Books]:
    async with open_books(database_url) as opened:
        yield opened


async def test_each_transfer_is_one_statement(books: Books) -> None:
    executed: list[str] = []
    engine = books.sessions.kw["bind"].sync_engine

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        executed.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        await ledger.create_transfer(books.sessions, topup_spec(books, books.prepaid, 1000, "topup"))
        await ledger.create_transfer(books.sessions, hold_spec(books, books.prepaid, 300, "h1"), pending=True)
        await ledger.post_pending(books.sessions, "h1:post", "h1")
        await ledger.create_transfer(books.sessions, hold_spec(books, books.prepaid, 200, "h2"), pending=True)
        await ledger.void_pending(books.sessions, "h2:void", "h2")
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert len(executed) == 5, executed
    assert await violations(books.sessions) == []


async def test_transfers_never_wait_for_a_platform_account(books: Books) -> None:
    await ledger.create_transfer(books.sessions, topup_spec(books, books.prepaid, 1000, "topup"))

    async def hold_and_post() -> None:
        await ledger.create_transfer(books.sessions, hold_spec(books, books.prepaid, 300, "h1"), pending=True)
        await ledger.post_pending(books.sessions, "h1:post", "h1")

    async with books.sessions() as other, other.begin():
        # Another transaction holds REVENUE's row as an UPDATE of it would (the lock transfers once took).
        await other.execute(
            text("SELECT 1 FROM accounts WHERE id = :id FOR NO KEY UPDATE"), {"id": books.revenue}
        )
        transfers = asyncio.create_task(hold_and_post())
        async with books.sessions() as probe:
            # Whichever is seen first decides: the transfers finish, or a session waits on a lock.
            while not transfers.done():
                waiting = await probe.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )
                )
                assert waiting == 0, "a transfer waits for the platform account's row"
                await asyncio.sleep(0.005)
        await transfers

    # REVENUE's totals come from its transfers; its row never moved.
    assert await totals(books.sessions, books.revenue) == (0, 300, 0, 0)
    async with books.sessions() as session:
        revenue = await session.get_one(Account, books.revenue)
        cached = (
            revenue.debits_posted_minor,
            revenue.credits_posted_minor,
            revenue.debits_pending_minor,
            revenue.credits_pending_minor,
        )
        assert cached == (0, 0, 0, 0)
        untouched = await session.scalar(
            select(Account.updated_at == Account.created_at).where(Account.id == books.revenue)
        )
    assert untouched is True
    assert await violations(books.sessions) == []


async def test_a_wallets_totals_are_read_from_its_row_not_its_transfers(books: Books) -> None:
    """A wallet's balance is one primary-key read whatever its history: no statement of the read plans
    anything over `transfers` (the aggregate is only for platform accounts)."""
    await ledger.create_transfer(books.sessions, topup_spec(books, books.prepaid, 1000, "topup"))
    await ledger.create_transfer(books.sessions, hold_spec(books, books.prepaid, 300, "h1"), pending=True)
    executed: list[tuple[str, tuple[object, ...]]] = []
    engine = books.sessions.kw["bind"].sync_engine

    def record(
        conn: object, cursor: object, statement: str, parameters: tuple[object, ...], *args: object
    ) -> None:
        executed.append((statement, parameters))

    async with books.sessions() as session:
        wallet = await session.get_one(Account, books.prepaid)
        event.listen(engine, "before_cursor_execute", record)
        try:
            found = await ledger.wallet_balance(session, wallet)
            totals_found = await ledger.account_totals(session, books.prepaid)
        finally:
            event.remove(engine, "before_cursor_execute", record)
        assert (found.balance_minor, found.available_minor, found.held_minor) == (1000, 700, 300)
        assert (totals_found.balance_minor, totals_found.available_minor) == (1000, 700)
        assert len(executed) == 2  # one statement each
        driver = (await (await session.connection()).get_raw_connection()).driver_connection
        for statement, parameters in executed:
            # The engine's json codec decodes the plan.
            plan = await driver.fetchval(f"EXPLAIN (FORMAT JSON) {statement}", *parameters)
            relations = {node["Relation Name"] for node in _plan_nodes(plan[0]["Plan"])}
            assert relations == {"accounts"}, (statement, relations)


def _plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if "Relation Name" in node:
        yield node
    for child in node.get("Plans", []):
        yield from _plan_nodes(child)
