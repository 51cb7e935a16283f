"""The ledger's rules, scenario by scenario, against a real migrated PostgreSQL database."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from tests.ledger.support import (
    CURRENCY,
    Books,
    balance,
    debit_spec,
    hold_spec,
    make_vendor,
    open_books,
    snapshot,
    statement,
    topup_spec,
    totals,
    violations,
)
from ttelgo import cli, ledger
from ttelgo.db import create_engine
from ttelgo.errors import AppError
from ttelgo.ledger import (
    AccountNotFound,
    InsufficientFunds,
    LedgerError,
    PendingAlreadyResolved,
    PendingNotFound,
    TransferConflict,
    TransferSpec,
    WalletBalance,
)
from ttelgo.models import (
    Account,
    AccountKind,
    BillingMode,
    LedgerEntryType,
    Transfer,
    TransferKind,
    Vendor,
)

T = LedgerEntryType


@pytest.fixture
async def books(database_url: str) -> AsyncIterator[Books]:
    async with open_books(database_url) as opened:
        yield opened


async def _funded(books: Books, amount: int = 5000) -> None:
    await ledger.create_transfer(books.sessions, topup_spec(books, books.prepaid, amount, "topup-1"))


# --- accounts ---------------------------------------------------------------------------------------


async def test_accounts_are_created_once_with_the_vendors_floor(books: Books) -> None:
    async with books.sessions() as session, session.begin():
        revenue = await ledger.platform_account(session, AccountKind.REVENUE, CURRENCY)
        wallet = await ledger.vendor_wallet(session, books.postpaid_vendor, CURRENCY)
        prepaid = await ledger.vendor_wallet(session, books.prepaid_vendor, CURRENCY)
        euro = await ledger.platform_account(session, AccountKind.REVENUE, "EUR")
    assert revenue.id == books.revenue and wallet.id == books.postpaid and prepaid.id == books.prepaid
    assert euro.id != books.revenue and euro.currency == "EUR"
    assert (wallet.enforce_floor, wallet.overdraft_limit_minor) == (True, 2000)
    assert (prepaid.enforce_floor, prepaid.overdraft_limit_minor) == (True, 0)
    assert (revenue.enforce_floor, revenue.vendor_id) == (False, None)


async def test_concurrent_get_or_create_makes_one_account(books: Books) -> None:
    vendor = await make_vendor(books.sessions)

    async def both() -> tuple[uuid.UUID, uuid.UUID]:
        async with books.sessions() as session, session.begin():
            platform = await ledger.platform_account(session, AccountKind.SUPPLIER_COST, "GBP")
            wallet = await ledger.vendor_wallet(session, vendor, "GBP")
            return platform.id, wallet.id

    results = await asyncio.gather(*(both() for _ in range(8)))
    assert len(set(results)) == 1
    async with books.sessions() as session:
        assert await session.scalar(select(func.count()).where(Account.currency == "GBP")) == 2


async def test_unknown_vendor_and_wallet_kind_are_refused(books: Books) -> None:
    async with books.sessions() as session:
        with pytest.raises(AccountNotFound) as caught:
            await ledger.vendor_wallet(session, uuid.uuid4(), CURRENCY)
        assert caught.value.code == "VENDOR_NOT_FOUND"
        with pytest.raises(LedgerError):
            await ledger.platform_account(session, AccountKind.VENDOR_WALLET, CURRENCY)


# --- single transfers ------------------------------------------------------------------------------


async def test_topup_credits_the_wallet(books: Books) -> None:
    transfer = await ledger.create_transfer(
        books.sessions,
        topup_spec(books, books.prepaid, 5000, "topup-1", memo="card 4242", metadata={"pi": "x"}),
    )
    assert (transfer.id, transfer.kind, transfer.amount_minor) == ("topup-1", TransferKind.SINGLE, 5000)
    assert transfer.created_at is not None and transfer.metadata_ == {"pi": "x"}
    assert await balance(books.sessions, books.prepaid) == WalletBalance(5000, 5000, 0, 0, CURRENCY)
    assert await totals(books.sessions, books.card) == (5000, 0, 0, 0)
    assert await statement(books.sessions, books.prepaid) == [(T.TOPUP, 5000, 5000, 5000)]
    assert await violations(books.sessions) == []


async def test_adjustment_debit(books: Books) -> None:
    await _funded(books)
    await ledger.create_transfer(books.sessions, debit_spec(books, books.prepaid, 1200, "adj-1"))
    assert await balance(books.sessions, books.prepaid) == WalletBalance(3800, 3800, 0, 0, CURRENCY)
    assert await totals(books.sessions, books.adjustments) == (0, 1200, 0, 0)
    assert await statement(books.sessions, books.prepaid) == [
        (T.TOPUP, 5000, 5000, 5000),
        (T.ADJUSTMENT, -1200, 3800, 3800),
    ]
    assert await violations(books.sessions) == []


# --- holds -----------------------------------------------------------------------------------------


async def test_hold_then_full_post(books: Books) -> None:
    await _funded(books)
    hold = await ledger.create_transfer(
        books.sessions, hold_spec(books, books.prepaid, 1500, "o1:hold"), pending=True
    )
    assert hold.kind is TransferKind.PENDING
    assert await balance(books.sessions, books.prepaid) == WalletBalance(5000, 3500, 1500, 0, CURRENCY)
    assert await totals(books.sessions, books.revenue) == (0, 0, 0, 1500)
    assert await violations(books.sessions) == []

    post = await ledger.post_pending(books.sessions, "o1:post", "o1:hold")
    assert (post.kind, post.pending_id, post.amount_minor) == (TransferKind.POST_PENDING, "o1:hold", 1500)
    assert (post.debit_account_id, post.credit_account_id, post.code) == (
        books.prepaid,
        books.revenue,
        "order_hold",
    )
    assert await balance(books.sessions, books.prepaid) == WalletBalance(3500, 3500, 0, 0, CURRENCY)
    assert await totals(books.sessions, books.revenue) == (0, 1500, 0, 0)
    assert await totals(books.sessions, books.prepaid) == (1500, 5000, 0, 0)
    assert await statement(books.sessions, books.prepaid) == [
        (T.TOPUP, 5000, 5000, 5000),
        (T.ORDER_HOLD, -1500, 5000, 3500),
        (T.ORDER_DEBIT, -1500, 3500, 3500),
    ]
    assert await violations(books.sessions) == []


async def test_partial_post_releases_the_rest(books: Books) -> None:
    await _funded(books)
    await ledger.create_transfer(
        books.sessions, hold_spec(books, books.prepaid, 1500, "o1:hold"), pending=True
    )
    post = await ledger.post_pending(books.sessions, "o1:post", "o1:hold", amount_minor=1000)
    assert post.amount_minor == 1000
    assert await balance(books.sessions, books.prepaid) == WalletBalance(4000, 4000, 0, 0, CURRENCY)
    assert await totals(books.sessions, books.revenue) == (0, 1000, 0, 0)
    assert await statement(books.sessions, books.prepaid) == [
        (T.TOPUP, 5000, 5000, 5000),
        (T.ORDER_HOLD, -1500, 5000, 3500),
        (T.ORDER_DEBIT, -1000, 4000, 4000),
    ]
    assert await violations(books.sessions) == []


async def test_hold_then_void(books: Books) -> None:
    await _funded(books)
    await ledger.create_transfer(
        books.sessions, hold_spec(books, books.prepaid, 1500, "o1:hold"), pending=True
    )
    void = await ledger.void_pending(books.sessions, "o1:void", "o1:hold")
    assert (void.kind, void.amount_minor) == (TransferKind.VOID_PENDING, 1500)
    assert await balance(books.sessions, books.prepaid) == WalletBalance(5000, 5000, 0, 0, CURRENCY)
    assert await totals(books.sessions, books.revenue) == (0, 0, 0, 0)
    assert await statement(books.sessions, books.prepaid) == [
        (T.TOPUP, 5000, 5000, 5000),
        (T.ORDER_HOLD, -1500, 5000, 3500),
        (T.HOLD_RELEASE, 1500, 5000, 5000),
    ]
    assert await violations(books.sessions) == []


async def test_pending_credit_to_a_wallet_is_not_spendable_until_posted(books: Books) -> None:
    refund = TransferSpec(
        id="refund-1",
        debit_account_id=books.revenue,
        credit_account_id=books.prepaid,
        amount_minor=700,
        currency=CURRENCY,
        code="refund",
        entry_type=T.REFUND,
    )
    await ledger.create_transfer(books.sessions, refund, pending=True)
    assert await balance(books.sessions, books.prepaid) == WalletBalance(0, 0, 0, 0, CURRENCY)
    with pytest.raises(InsufficientFunds):
        await ledger.create_transfer(books.sessions, debit_spec(books, books.prepaid, 1, "adj-1"))
    await ledger.post_pending(books.sessions, "refund-1:post", "refund-1", entry_type=T.REFUND)
    assert await balance(books.sessions, books.prepaid) == WalletBalance(700, 700, 0, 0, CURRENCY)
    assert await statement(books.sessions, books.prepaid) == [
        (T.REFUND, 700, 0, 0),
        (T.REFUND, 700, 700, 700),
    ]
    assert await violations(books.sessions) == []


# --- floors ----------------------------------------------------------------------------------------


async def test_prepaid_insufficient_funds_writes_nothing(books: Books) -> None:
    await _funded(books, 1000)
    await ledger.create_transfer(books.sessions, hold_spec(books, books.prepaid, 600, "h1"), pending=True)
    before = await snapshot(books.sessions)
    for spec, pending in (
        (hold_spec(books, books.prepaid, 401, "h2"), True),
        (debit_spec(books, books.prepaid, 401, "d1"), False),
    ):
        with pytest.raises(InsufficientFunds) as caught:
            await ledger.create_transfer(books.sessions, spec, pending=pending)
        assert caught.value.code == "INSUFFICIENT_FUNDS"
        assert (caught.value.available_minor, caught.value.requested_minor) == (400, 401)
        assert await snapshot(books.sessions) == before
    # Exactly what is available still goes through.
    await ledger.create_transfer(books.sessions, hold_spec(books, books.prepaid, 400, "h2"), pending=True)
    assert await balance(books.sessions, books.prepaid) == WalletBalance(1000, 0, 1000, 0, CURRENCY)
    assert await violations(books.sessions) == []


async def test_postpaid_may_go_down_to_minus_the_credit_limit(books: Books) -> None:
    await ledger.create_transfer(books.sessions, hold_spec(books, books.postpaid, 1500, "h1"), pending=True)
    await ledger.create_transfer(books.sessions, debit_spec(books, books.postpaid, 500, "d1"))
    assert await balance(books.sessions, books.postpaid) == WalletBalance(-500, -2000, 1500, 2000, CURRENCY)
    before = await snapshot(books.sessions)
    with pytest.raises(InsufficientFunds) as caught:
        await ledger.create_transfer(books.sessions, debit_spec(books, books.postpaid, 1, "d2"))
    assert caught.value.code == "CREDIT_LIMIT_EXCEEDED"
    assert (caught.value.available_minor, caught.value.requested_minor) == (-2000, 1)
    assert await snapshot(books.sessions) == before
    # Crediting never fails the floor; it makes room again.
    await ledger.create_transfer(books.sessions, topup_spec(books, books.postpaid, 1, "t1"))
    await ledger.create_transfer(books.sessions, debit_spec(books, books.postpaid, 1, "d2"))
    assert (await balance(books.sessions, books.postpaid)).available_minor == -2000
    assert await violations(books.sessions) == []


async def test_platform_accounts_have_no_floor(books: Books) -> None:
    spec = TransferSpec(
        id="cost-1",
        debit_account_id=books.revenue,
        credit_account_id=books.adjustments,
        amount_minor=10_000,
        currency=CURRENCY,
        code="supplier",
        entry_type=T.ADJUSTMENT,
    )
    await ledger.create_transfer(books.sessions, spec)
    assert await totals(books.sessions, books.revenue) == (10_000, 0, 0, 0)
    assert (await snapshot(books.sessions)).entries == 0  # no wallet, no statement row
    assert await violations(books.sessions) == []


async def test_sync_wallet_limits_after_switching_to_postpaid(books: Books) -> None:
    with pytest.raises(InsufficientFunds) as caught:
        await ledger.create_transfer(books.sessions, debit_spec(books, books.prepaid, 500, "d1"))
    assert caught.value.code == "INSUFFICIENT_FUNDS"
    async with books.sessions() as session, session.begin():
        vendor = await session.get_one(Vendor, books.prepaid_vendor)
        vendor.billing_mode, vendor.credit_limit_minor = BillingMode.POSTPAID, 1000
        await session.flush()
        await ledger.sync_wallet_limits(session, vendor)
    assert (await balance(books.sessions, books.prepaid)).credit_limit_minor == 1000
    await ledger.create_transfer(books.sessions, debit_spec(books, books.prepaid, 500, "d1"))
    with pytest.raises(InsufficientFunds) as caught:
        await ledger.create_transfer(books.sessions, debit_spec(books, books.prepaid, 501, "d2"))
    assert caught.value.code == "CREDIT_LIMIT_EXCEEDED"
    assert await balance(books.sessions, books.prepaid) == WalletBalance(-500, -500, 0, 1000, CURRENCY)
    assert await violations(books.sessions) == []


async def test_posting_a_hold_never_fails_the_floor(books: Books) -> None:
    await ledger.create_transfer(books.sessions, hold_spec(books, books.postpaid, 2000, "h1"), pending=True)
    # The vendor goes back to PREPAID while the hold is open: the hold was counted, so it still posts.
    async with books.sessions() as session, session.begin():
        vendor = await session.get_one(Vendor, books.postpaid_vendor)
        vendor.billing_mode = BillingMode.PREPAID
        await session.flush()
        await ledger.sync_wallet_limits(session, vendor)
    await ledger.post_pending(books.sessions, "h1:post", "h1")
    assert await balance(books.sessions, books.postpaid) == WalletBalance(-2000, -2000, 0, 0, CURRENCY)
    # Spending beyond the (new) floor is not an error, but check reports the wallet as below it.
    problems = await violations(books.sessions)
    assert len(problems) == 1 and "below its floor" in problems[0]


# --- idempotency -----------------------------------------------------------------------------------


async def test_replaying_the_same_fields_returns_the_same_transfer(books: Books) -> None:
    top = topup_spec(books, books.prepaid, 5000, "topup-1", metadata={"a": [1, 2]})
    first = await ledger.create_transfer(books.sessions, top)
    hold = await ledger.create_transfer(
        books.sessions, hold_spec(books, books.prepaid, 900, "h1"), pending=True
    )
    post = await ledger.post_pending(books.sessions, "h1:post", "h1", amount_minor=800)
    await ledger.create_transfer(books.sessions, hold_spec(books, books.prepaid, 300, "h2"), pending=True)
    void = await ledger.void_pending(books.sessions, "h2:void", "h2")
    before = await snapshot(books.sessions)

    again = await ledger.create_transfer(books.sessions, top)
    assert (again.id, again.created_at, again.amount_minor) == (first.id, first.created_at, 5000)
    assert (
        await ledger.create_transfer(books.sessions, hold_spec(books, books.prepaid, 900, "h1"), pending=True)
    ).created_at == hold.created_at
    assert (
        await ledger.post_pending(books.sessions, "h1:post", "h1", amount_minor=800)
    ).created_at == post.created_at
    assert (await ledger.void_pending(books.sessions, "h2:void", "h2")).created_at == void.created_at
    assert await snapshot(books.sessions) == before
    assert await violations(books.sessions) == []


@pytest.mark.parametrize(
    "change",
    [
        {"amount_minor": 5001},
        {"memo": "other"},
        {"code": "other"},
        {"metadata": {"a": 1}},
        {"entry_type": T.ADJUSTMENT},
        {"timeout_at": datetime(2030, 1, 1, tzinfo=UTC)},
        {"pending": True},
    ],
)
async def test_same_id_different_fields_is_a_conflict(books: Books, change: dict[str, object]) -> None:
    spec = topup_spec(books, books.prepaid, 5000, "topup-1")
    await ledger.create_transfer(books.sessions, spec)
    before = await snapshot(books.sessions)
    pending = bool(change.pop("pending", False))
    changed = TransferSpec(**{**spec.__dict__, **change})  # type: ignore[arg-type]
    with pytest.raises(TransferConflict) as caught:
        await ledger.create_transfer(books.sessions, changed, pending=pending)
    assert caught.value.code == "CONFLICT"
    assert await snapshot(books.sessions) == before


async def test_resolution_replays_with_other_fields_conflict(books: Books) -> None:
    await _funded(books)
    await ledger.create_transfer(books.sessions, hold_spec(books, books.prepaid, 900, "h1"), pending=True)
    await ledger.post_pending(books.sessions, "h1:post", "h1", amount_minor=800)
    with pytest.raises(TransferConflict):
        await ledger.post_pending(books.sessions, "h1:post", "h1")  # None means all 900
    with pytest.raises(TransferConflict):
        await ledger.void_pending(books.sessions, "h1:post", "h1")
    with pytest.raises(TransferConflict):
        await ledger.post_pending(books.sessions, "h1:post", "h1", amount_minor=800, entry_type=T.ADJUSTMENT)
    with pytest.raises(TransferConflict):
        await ledger.post_pending(books.sessions, "topup-1", "h1", amount_minor=800)  # the id of a top-up


async def test_a_hold_resolves_at_most_once(books: Books) -> None:
    await _funded(books)
    await ledger.create_transfer(books.sessions, hold_spec(books, books.prepaid, 900, "h1"), pending=True)
    await ledger.post_pending(books.sessions, "h1:post", "h1")
    before = await snapshot(books.sessions)
    with pytest.raises(PendingAlreadyResolved) as caught:
        await ledger.post_pending(books.sessions, "h1:post-again", "h1")
    assert "h1:post" in str(caught.value) and caught.value.code == "CONFLICT"
    with pytest.raises(PendingAlreadyResolved):
        await ledger.void_pending(books.sessions, "h1:void", "h1")
    assert await snapshot(books.sessions) == before
    assert await violations(books.sessions) == []


async def test_bad_resolutions_are_refused(books: Books) -> None:
    await _funded(books)
    await ledger.create_transfer(books.sessions, hold_spec(books, books.prepaid, 900, "h1"), pending=True)
    before = await snapshot(books.sessions)
    with pytest.raises(PendingNotFound):
        await ledger.post_pending(books.sessions, "x:post", "no-such-hold")
    with pytest.raises(PendingNotFound):
        await ledger.void_pending(books.sessions, "x:void", "topup-1")  # a SINGLE, not a hold
    with pytest.raises(LedgerError, match="cannot post 901"):
        await ledger.post_pending(books.sessions, "h1:post", "h1", amount_minor=901)
    for amount in (0, -5):
        with pytest.raises(LedgerError):
            await ledger.post_pending(books.sessions, "h1:post", "h1", amount_minor=amount)
    assert await snapshot(books.sessions) == before


# --- validation ------------------------------------------------------------------------------------


async def test_currency_mismatch_is_refused(books: Books) -> None:
    async with books.sessions() as session, session.begin():
        euro_revenue = (await ledger.platform_account(session, AccountKind.REVENUE, "EUR")).id
    await _funded(books)
    before = await snapshot(books.sessions)
    mixed = hold_spec(books, books.prepaid, 100, "h1")
    for spec in (
        TransferSpec(**{**mixed.__dict__, "credit_account_id": euro_revenue}),
        TransferSpec(**{**mixed.__dict__, "currency": "EUR"}),
    ):
        with pytest.raises(LedgerError, match="is in") as caught:
            await ledger.create_transfer(books.sessions, spec)
        assert caught.value.code == "VALIDATION_ERROR"
    assert await snapshot(books.sessions) == before


async def test_malformed_transfers_are_refused(books: Books) -> None:
    await _funded(books)
    before = await snapshot(books.sessions)
    base = debit_spec(books, books.prepaid, 100, "d1")
    for change in ({"amount_minor": 0}, {"amount_minor": -1}, {"credit_account_id": books.prepaid}):
        with pytest.raises(LedgerError):
            await ledger.create_transfer(books.sessions, TransferSpec(**{**base.__dict__, **change}))
    with pytest.raises(AccountNotFound):
        await ledger.create_transfer(
            books.sessions, TransferSpec(**{**base.__dict__, "credit_account_id": uuid.uuid4()})
        )
    assert await snapshot(books.sessions) == before


def test_ledger_errors_are_catalogue_errors() -> None:
    error = InsufficientFunds("no", code="CREDIT_LIMIT_EXCEEDED", available_minor=-5, requested_minor=10)
    assert isinstance(error, AppError) and error.spec.status == 402
    assert error.extra == {"available_minor": -5, "requested_minor": 10}
    assert PendingNotFound("x").spec.status == 404


# --- retries ---------------------------------------------------------------------------------------


def _flaky_sessions(database_url: str, sqlstate: str, failures: int) -> tuple[async_sessionmaker, list[int]]:
    """Sessions whose first `failures` transactions fail with a real PostgreSQL error of `sqlstate`."""

    class FlakySession(Session):
        pass

    begun: list[int] = []

    @event.listens_for(FlakySession, "after_begin")
    def _fail(session: Session, transaction: object, connection: object) -> None:
        begun.append(1)
        if len(begun) <= failures:
            connection.exec_driver_sql(  # type: ignore[attr-defined]
                f"DO $$ BEGIN RAISE EXCEPTION 'injected' USING ERRCODE = '{sqlstate}'; END $$"
            )

    engine = create_engine(database_url, pool_size=2)
    return async_sessionmaker(engine, sync_session_class=FlakySession), begun


@pytest.mark.parametrize(
    ("sqlstate", "failures", "succeeds", "attempts"),
    [
        ("40001", 2, True, 3),
        ("40P01", 4, True, 5),
        ("40001", 5, False, 5),
        ("23514", 1, False, 1),  # check_violation: not retryable
    ],
)
async def test_serialization_failures_and_deadlocks_are_retried(
    books: Books, database_url: str, sqlstate: str, failures: int, succeeds: bool, attempts: int
) -> None:
    sessions, begun = _flaky_sessions(database_url, sqlstate, failures)
    spec = topup_spec(books, books.prepaid, 100, "t1")
    try:
        if succeeds:
            await ledger.create_transfer(sessions, spec)
        else:
            with pytest.raises(DBAPIError) as caught:
                await ledger.create_transfer(sessions, spec)
            assert caught.value.orig.sqlstate == sqlstate  # type: ignore[union-attr]
    finally:
        await sessions.kw["bind"].dispose()
    assert len(begun) == attempts
    assert (await snapshot(books.sessions)).transfers == (1 if succeeds else 0)


async def test_returned_transfers_are_usable_whatever_expire_on_commit(
    books: Books, database_url: str
) -> None:
    engine = create_engine(database_url, pool_size=2)
    try:
        sessions = async_sessionmaker(engine, expire_on_commit=True)
        transfer = await ledger.create_transfer(sessions, topup_spec(books, books.prepaid, 100, "t1"))
        assert (transfer.amount_minor, transfer.created_at is not None) == (100, True)
    finally:
        await engine.dispose()


# --- invariants ------------------------------------------------------------------------------------


async def _busy_books(books: Books) -> None:
    await _funded(books)
    await ledger.create_transfer(books.sessions, hold_spec(books, books.prepaid, 900, "h1"), pending=True)
    await ledger.create_transfer(books.sessions, hold_spec(books, books.postpaid, 400, "h2"), pending=True)
    await ledger.post_pending(books.sessions, "h1:post", "h1", amount_minor=700)
    assert await violations(books.sessions) == []


@pytest.mark.parametrize(
    ("corruption", "expected"),
    [
        pytest.param(
            "UPDATE accounts SET credits_posted_minor = credits_posted_minor + 1 WHERE id = :prepaid",
            ("sum to zero", "cached totals", "newest statement row"),
            id="wallet-credit",
        ),
        pytest.param(
            "UPDATE accounts SET debits_pending_minor = 0, credits_pending_minor = 0",
            ("cached totals", "newest statement row"),
            id="pending-cleared-on-both-sides",
        ),
        pytest.param(
            "UPDATE vendor_ledger_entries SET available_after_minor = 1",
            ("newest statement row",),
            id="statement",
        ),
        pytest.param(
            "UPDATE accounts SET overdraft_limit_minor = 100 WHERE id = :postpaid",
            ("below its floor",),
            id="floor",
        ),
        pytest.param(
            "UPDATE transfers SET amount_minor = 901 WHERE id = 'h1:post'",
            ("does not match that hold", "cached totals"),
            id="post-exceeds-hold",
        ),
    ],
)
async def test_check_invariants_reports_corruption(
    books: Books, corruption: str, expected: tuple[str, ...]
) -> None:
    await _busy_books(books)
    ids = {"prepaid": books.prepaid, "postpaid": books.postpaid}
    async with books.sessions() as session, session.begin():
        await session.execute(text(corruption), {k: v for k, v in ids.items() if f":{k}" in corruption})
    problems = await violations(books.sessions)
    for phrase in expected:
        assert any(phrase in problem for problem in problems), (phrase, problems)


async def test_check_invariants_reports_a_twice_resolved_hold(books: Books) -> None:
    await _busy_books(books)
    async with books.sessions() as session, session.begin():
        # Only possible with the guard removed: the unique index is what normally forbids it.
        await session.execute(text("DROP INDEX uq_transfers_pending_id"))
        session.add(
            Transfer(
                id="h1:post-twice",
                kind=TransferKind.VOID_PENDING,
                debit_account_id=books.prepaid,
                credit_account_id=books.revenue,
                amount_minor=900,
                currency=CURRENCY,
                pending_id="h1",
                code="order_hold",
            )
        )
    problems = await violations(books.sessions)
    assert any("resolved more than once" in p for p in problems), problems


async def test_cli_ledger_check(books: Books, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    await _busy_books(books)
    monkeypatch.setattr(cli, "_database_url", lambda: database_url)

    async def check() -> tuple[int, str]:
        # In a thread: the command runs its own event loop.
        result = await asyncio.to_thread(CliRunner().invoke, cli.app, ["ledger", "check"])
        return result.exit_code, result.output

    assert await check() == (0, "ledger OK: 5 accounts, 4 transfers\n")
    async with books.sessions() as session, session.begin():
        await session.execute(
            text("UPDATE accounts SET debits_posted_minor = debits_posted_minor + 5 WHERE id = :id"),
            {"id": books.prepaid},
        )
    code, output = await check()
    assert code == 1 and "sum to zero" in output and "cached totals" in output
    assert "newest statement row" in output and "3 ledger violation(s)" in output
