"""Concurrency: many sessions at once against one wallet. Row locks, not luck, must keep the floor."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable

import pytest
from sqlalchemy import text

from tests.ledger.support import (
    CURRENCY,
    Books,
    balance,
    hold_spec,
    open_books,
    snapshot,
    statement,
    topup_spec,
    violations,
)
from ttelgo import ledger
from ttelgo.ledger import InsufficientFunds, PendingAlreadyResolved, TransferConflict, TransferSpec
from ttelgo.models import LedgerEntryType, Transfer, TransferKind

CONCURRENCY = 50


@pytest.fixture
async def books(database_url: str) -> AsyncIterator[Books]:
    async with open_books(database_url, pool_size=25, credit_limit_minor=2000) as opened:
        yield opened


async def _outcomes(calls: list[Awaitable[Transfer]]) -> list[Transfer | BaseException]:
    return await asyncio.gather(*calls, return_exceptions=True)


async def _watch_available(books: Books, wallet: uuid.UUID, done: asyncio.Event) -> list[int]:
    """Samples committed availability while the race runs (a second opinion besides the statement)."""
    seen: list[int] = []
    while not done.is_set():
        seen.append((await balance(books.sessions, wallet)).available_minor)
        await asyncio.sleep(0)
    return seen


async def _race_holds(books: Books, wallet: uuid.UUID) -> tuple[list[Transfer | BaseException], list[int]]:
    done = asyncio.Event()
    watcher = asyncio.create_task(_watch_available(books, wallet, done))
    try:
        outcomes = await _outcomes(
            [
                ledger.create_transfer(
                    books.sessions, hold_spec(books, wallet, 100, f"hold-{n}"), pending=True
                )
                for n in range(CONCURRENCY)
            ]
        )
    finally:
        done.set()
    return outcomes, await watcher


@pytest.mark.parametrize(
    ("wallet_name", "funding", "floor", "refusal"),
    [("prepaid", 2000, 0, "INSUFFICIENT_FUNDS"), ("postpaid", 0, -2000, "CREDIT_LIMIT_EXCEEDED")],
)
async def test_concurrent_holds_never_cross_the_floor(
    books: Books, wallet_name: str, funding: int, floor: int, refusal: str
) -> None:
    wallet: uuid.UUID = getattr(books, wallet_name)
    if funding:
        await ledger.create_transfer(books.sessions, topup_spec(books, wallet, funding, "topup"))
    outcomes, samples = await _race_holds(books, wallet)

    held = [o for o in outcomes if isinstance(o, Transfer)]
    refused = [o for o in outcomes if isinstance(o, InsufficientFunds)]
    assert (len(held), len(refused)) == (20, 30), [o for o in outcomes if isinstance(o, BaseException)]
    assert {r.code for r in refused} == {refusal}
    assert all(r.requested_minor == 100 and r.available_minor - 100 < floor for r in refused)

    assert await balance(books.sessions, wallet) == ledger.WalletBalance(
        balance_minor=funding,
        available_minor=floor,
        held_minor=2000,
        credit_limit_minor=-floor,
        currency=CURRENCY,
    )
    assert samples and min(samples) >= floor
    # Every committed step, in commit order, stayed at or above the floor, one hold at a time.
    rows = await statement(books.sessions, wallet)
    holds = [r for r in rows if r[0] is LedgerEntryType.ORDER_HOLD]
    assert [r[3] for r in holds] == list(range(funding - 100, floor - 1, -100))
    assert all(r[1] == -100 and r[2] == funding for r in holds)
    assert (await snapshot(books.sessions)).transfers == 20 + (1 if funding else 0)
    assert await violations(books.sessions) == []


async def test_concurrent_replays_of_one_id_write_once(books: Books) -> None:
    await ledger.create_transfer(books.sessions, topup_spec(books, books.prepaid, 2000, "topup"))
    spec = hold_spec(books, books.prepaid, 300, "order-1:hold")
    outcomes = await _outcomes(
        [ledger.create_transfer(books.sessions, spec, pending=True) for _ in range(20)]
    )

    assert all(isinstance(o, Transfer) for o in outcomes), outcomes
    assert {(o.id, o.created_at) for o in outcomes} == {(outcomes[0].id, outcomes[0].created_at)}  # type: ignore[union-attr]
    after = await snapshot(books.sessions)
    assert (after.transfers, after.entries) == (2, 2)
    assert await statement(books.sessions, books.prepaid) == [
        (LedgerEntryType.TOPUP, 2000, 2000, 2000),
        (LedgerEntryType.ORDER_HOLD, -300, 2000, 1700),
    ]
    assert await violations(books.sessions) == []


async def test_concurrent_resolutions_of_one_hold_resolve_it_once(books: Books) -> None:
    await ledger.create_transfer(books.sessions, topup_spec(books, books.prepaid, 2000, "topup"))
    await ledger.create_transfer(books.sessions, hold_spec(books, books.prepaid, 500, "h"), pending=True)
    calls = [
        ledger.post_pending(books.sessions, f"h:post-{n}", "h")
        if n % 2
        else ledger.void_pending(books.sessions, f"h:void-{n}", "h")
        for n in range(20)
    ]
    outcomes = await _outcomes(calls)

    winners = [o for o in outcomes if isinstance(o, Transfer)]
    assert len(winners) == 1
    assert all(isinstance(o, PendingAlreadyResolved) for o in outcomes if o is not winners[0])
    expected = 1500 if winners[0].kind is TransferKind.POST_PENDING else 2000
    assert (await balance(books.sessions, books.prepaid)).available_minor == expected
    assert (await snapshot(books.sessions)).transfers == 3
    assert await violations(books.sessions) == []


async def test_same_id_on_unrelated_accounts_conflicts_under_concurrency(books: Books) -> None:
    """No shared account lock here: the primary key decides, and the loser reads the winner's row."""
    specs = [
        topup_spec(books, books.prepaid, 100, "shared-id"),
        TransferSpec(
            id="shared-id",
            debit_account_id=books.revenue,
            credit_account_id=books.adjustments,
            amount_minor=100,
            currency=CURRENCY,
            code="other",
            entry_type=LedgerEntryType.ADJUSTMENT,
        ),
    ]
    for _ in range(5):  # the interleaving varies; the answer must not
        outcomes = await _outcomes([ledger.create_transfer(books.sessions, spec) for spec in specs])
        assert sorted(type(o).__name__ for o in outcomes) == ["Transfer", "TransferConflict"]
        assert any(isinstance(o, TransferConflict) for o in outcomes)
        assert (await snapshot(books.sessions)).transfers == 1
        assert await violations(books.sessions) == []
        async with books.sessions() as session, session.begin():
            # Start the next round from scratch (ledger rows are immutable only by convention here).
            await session.execute(text("DELETE FROM vendor_ledger_entries"))
            await session.execute(text("DELETE FROM transfers"))
            await session.execute(
                text(
                    "UPDATE accounts SET debits_posted_minor = 0, credits_posted_minor = 0,"
                    " debits_pending_minor = 0, credits_pending_minor = 0"
                )
            )
