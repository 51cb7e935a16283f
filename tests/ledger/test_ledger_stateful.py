"""Model-based test: random sequences of top-ups, debits, holds, posts, voids and replays against two
wallets (PREPAID, POSTPAID) must match a tiny in-memory model, and the ledger's invariants must hold
after every step. Each example gets its own freshly cloned database."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select

from tests.conftest import TEMPLATE_DB, Postgres, cloned_database
from tests.ledger.support import CURRENCY, Books, debit_spec, hold_spec, open_books, topup_spec
from ttelgo import ledger
from ttelgo.ledger import (
    InsufficientFunds,
    LedgerError,
    PendingAlreadyResolved,
    TransferConflict,
    TransferSpec,
)
from ttelgo.ledger.accounts import ACCOUNT_TOTALS
from ttelgo.models import Account, LedgerEntryType, Transfer, VendorLedgerEntry

R = TypeVar("R")
CREDIT_LIMIT = 1500
WALLETS = st.sampled_from(["prepaid", "postpaid"])
AMOUNTS = st.integers(min_value=1, max_value=2000)
PICKS = st.integers(min_value=0, max_value=10_000)
RESOLUTIONS = ("post all", "post part", "post too much", "void")


@dataclass
class Hold:
    id: str
    wallet: str
    amount: int
    resolved_by: str | None = None


@dataclass(frozen=True)
class Call:
    """A call that succeeded, kept so it can be replayed; `kind` picks the ledger function."""

    kind: str  # "single", "pending", "post" or "void"
    transfer_id: str
    spec: TransferSpec | None = None
    pending_id: str | None = None
    amount: int | None = None
    entry_type: LedgerEntryType | None = None


class LedgerMachine(RuleBasedStateMachine):
    loop: asyncio.AbstractEventLoop  # set by the test: one loop drives every example
    postgres: Postgres

    def __init__(self) -> None:
        super().__init__()
        self._database = cloned_database(self.postgres, TEMPLATE_DB)
        url = self._run(self._database.__aenter__())
        self._books_context = open_books(url, pool_size=2, credit_limit_minor=CREDIT_LIMIT)
        self.books: Books = self._run(self._books_context.__aenter__())
        self.wallets = {"prepaid": self.books.prepaid, "postpaid": self.books.postpaid}
        self.limits = {"prepaid": 0, "postpaid": CREDIT_LIMIT}
        # The model: the four totals of every account, what was written, and what can be replayed.
        self.totals: dict[uuid.UUID, list[int]] = {}
        self.transfers = 0
        self.entries = 0
        self.holds: list[Hold] = []
        self.done: list[Call] = []
        self.created_at: dict[str, object] = {}
        self.serial = 0

    def teardown(self) -> None:
        try:
            self._run(self._books_context.__aexit__(None, None, None))
        finally:
            self._run(self._database.__aexit__(None, None, None))

    def _run(self, work: Awaitable[R]) -> R:
        return self.loop.run_until_complete(work)

    # --- the model -------------------------------------------------------------------------------

    def _next_id(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}-{self.serial}"

    def _account(self, account_id: uuid.UUID) -> list[int]:
        return self.totals.setdefault(account_id, [0, 0, 0, 0])  # dp, cp, dpe, cpe

    def _available(self, wallet: str) -> int:
        dp, cp, dpe, _ = self._account(self.wallets[wallet])
        return cp - dp - dpe

    def _fits(self, wallet: str, amount: int) -> bool:
        return self._available(wallet) - amount >= -self.limits[wallet]

    def _move(self, debit: uuid.UUID, credit: uuid.UUID, amount: int, *, pending: bool) -> None:
        self._account(debit)[2 if pending else 0] += amount
        self._account(credit)[3 if pending else 1] += amount

    # --- calling the ledger ----------------------------------------------------------------------

    def _call(self, call: Call) -> Transfer:
        sessions = self.books.sessions
        work: Callable[[], Awaitable[Transfer]]
        if call.kind in ("single", "pending"):
            assert call.spec is not None
            spec = call.spec
            work = lambda: ledger.create_transfer(sessions, spec, pending=call.kind == "pending")  # noqa: E731
        elif call.kind == "post":
            assert call.pending_id is not None and call.entry_type is not None
            pending_id, entry_type = call.pending_id, call.entry_type
            work = lambda: ledger.post_pending(  # noqa: E731
                sessions, call.transfer_id, pending_id, amount_minor=call.amount, entry_type=entry_type
            )
        else:
            assert call.pending_id is not None and call.entry_type is not None
            pending_id, entry_type = call.pending_id, call.entry_type
            work = lambda: ledger.void_pending(sessions, call.transfer_id, pending_id, entry_type=entry_type)  # noqa: E731
        return self._run(work())

    def _succeeded(
        self, call: Call, transfer: Transfer, wallet: str, row: tuple[LedgerEntryType, int]
    ) -> None:
        assert transfer.id == call.transfer_id
        self.done.append(call)
        self.created_at[transfer.id] = transfer.created_at
        self.transfers += 1
        self.entries += 1
        assert self._run(self._statement_row(transfer.id, self.wallets[wallet])) == row

    async def _statement_row(self, transfer_id: str, account_id: uuid.UUID) -> tuple[LedgerEntryType, int]:
        async with self.books.sessions() as session:
            entry = (
                await session.scalars(
                    select(VendorLedgerEntry).where(
                        VendorLedgerEntry.transfer_id == transfer_id,
                        VendorLedgerEntry.account_id == account_id,
                    )
                )
            ).one()
            return entry.entry_type, entry.amount_minor

    def _debit_like(self, wallet: str, amount: int, *, pending: bool) -> None:
        """A direct debit (SINGLE to ADJUSTMENTS) or a hold (PENDING to REVENUE): the floor decides."""
        make = hold_spec if pending else debit_spec
        spec = make(self.books, self.wallets[wallet], amount, self._next_id("hold" if pending else "debit"))
        call = Call("pending" if pending else "single", spec.id, spec=spec)
        if not self._fits(wallet, amount):
            with pytest.raises(InsufficientFunds) as caught:
                self._call(call)
            assert caught.value.code == (
                "CREDIT_LIMIT_EXCEEDED" if wallet == "postpaid" else "INSUFFICIENT_FUNDS"
            )
            assert (caught.value.available_minor, caught.value.requested_minor) == (
                self._available(wallet),
                amount,
            )
            return
        transfer = self._call(call)
        self._move(spec.debit_account_id, spec.credit_account_id, amount, pending=pending)
        if pending:
            self.holds.append(Hold(spec.id, wallet, amount))
        self._succeeded(call, transfer, wallet, (spec.entry_type, -amount))

    # --- rules -----------------------------------------------------------------------------------

    @initialize(prepaid=st.integers(min_value=0, max_value=6000))
    def opening_balance(self, prepaid: int) -> None:
        """Most examples start with money in the PREPAID wallet, so holds (and posts) get going."""
        if prepaid:
            self.top_up("prepaid", prepaid)

    @rule(wallet=WALLETS, amount=AMOUNTS)
    def top_up(self, wallet: str, amount: int) -> None:
        spec = topup_spec(self.books, self.wallets[wallet], amount, self._next_id("topup"))
        call = Call("single", spec.id, spec=spec)
        transfer = self._call(call)
        self._move(self.books.card, self.wallets[wallet], amount, pending=False)
        self._succeeded(call, transfer, wallet, (LedgerEntryType.TOPUP, amount))

    @rule(wallet=WALLETS, amount=AMOUNTS)
    def debit(self, wallet: str, amount: int) -> None:
        self._debit_like(wallet, amount, pending=False)

    @rule(wallet=WALLETS, amount=AMOUNTS, then=st.sampled_from(["keep", *RESOLUTIONS]), cut=PICKS)
    def hold(self, wallet: str, amount: int, then: str, cut: int) -> None:
        """Hold, and maybe resolve at once (as most orders do), so resolutions never depend on Hypothesis
        happening to enable `resolve` in an example; held-over holds are left to `resolve`."""
        held = len(self.holds)
        self._debit_like(wallet, amount, pending=True)
        if then != "keep" and len(self.holds) > held:
            self._resolve(self.holds[-1], then, cut)

    @precondition(lambda self: self.holds)
    @rule(
        pick=PICKS,
        how=st.sampled_from(RESOLUTIONS),
        stale=st.booleans(),
        cut=PICKS,
    )
    def resolve(self, pick: int, how: str, stale: bool, cut: int) -> None:
        """Post or void a hold: mostly an open one; a stale pick hits one that may be resolved already."""
        open_holds = [h for h in self.holds if h.resolved_by is None]
        pool = self.holds if stale or not open_holds else open_holds
        self._resolve(pool[pick % len(pool)], how, cut)

    def _resolve(self, hold: Hold, how: str, cut: int) -> None:
        if how == "void":
            self._void(hold)
        else:
            # None posts the whole hold; a part may also equal it; too much must be refused.
            part, too_much = 1 + cut % hold.amount, hold.amount + 1 + cut % 100
            self._post(hold, {"post all": None, "post part": part, "post too much": too_much}[how])

    def _post(self, hold: Hold, amount: int | None) -> None:
        call = Call(
            "post",
            self._next_id("post"),
            pending_id=hold.id,
            amount=amount,
            entry_type=LedgerEntryType.ORDER_DEBIT,
        )
        posted = hold.amount if amount is None else amount
        if posted > hold.amount:
            with pytest.raises(LedgerError, match="cannot post"):
                self._call(call)
        elif hold.resolved_by is not None:
            with pytest.raises(PendingAlreadyResolved, match=hold.resolved_by):
                self._call(call)
        else:
            transfer = self._call(call)
            assert transfer.amount_minor == posted
            wallet = self.wallets[hold.wallet]
            # The whole hold leaves pending; only the posted part lands.
            self._account(wallet)[2] -= hold.amount
            self._account(self.books.revenue)[3] -= hold.amount
            self._move(wallet, self.books.revenue, posted, pending=False)
            hold.resolved_by = call.transfer_id
            self._succeeded(call, transfer, hold.wallet, (LedgerEntryType.ORDER_DEBIT, -posted))

    def _void(self, hold: Hold) -> None:
        call = Call(
            "void", self._next_id("void"), pending_id=hold.id, entry_type=LedgerEntryType.HOLD_RELEASE
        )
        if hold.resolved_by is not None:
            with pytest.raises(PendingAlreadyResolved, match=hold.resolved_by):
                self._call(call)
            return
        transfer = self._call(call)
        self._account(self.wallets[hold.wallet])[2] -= hold.amount
        self._account(self.books.revenue)[3] -= hold.amount
        hold.resolved_by = call.transfer_id
        self._succeeded(call, transfer, hold.wallet, (LedgerEntryType.HOLD_RELEASE, hold.amount))

    @precondition(lambda self: self.done)
    @rule(pick=PICKS, change=st.sampled_from(["nothing", "amount", "memo", "kind", "entry_type"]))
    def replay(self, pick: int, change: str) -> None:
        """A retried call with the same id: the same fields return the first result and change
        nothing; any other field is refused as a conflict, whatever the model says about funds."""
        call = self.done[pick % len(self.done)]
        if change == "nothing":
            transfer = self._call(call)
            assert (transfer.id, transfer.created_at) == (call.transfer_id, self.created_at[call.transfer_id])
            return
        if call.kind in ("single", "pending"):
            assert call.spec is not None
            spec = call.spec
            if change == "amount":
                call = replace(call, spec=replace(spec, amount_minor=spec.amount_minor + 1))
            elif change == "memo":
                call = replace(call, spec=replace(spec, memo="something else"))
            elif change == "entry_type":
                call = replace(call, spec=replace(spec, entry_type=LedgerEntryType.REFUND))
            else:
                call = replace(call, kind="pending" if call.kind == "single" else "single")
        elif change == "kind":
            call = replace(call, kind="void" if call.kind == "post" else "post", amount=None)
        elif change == "amount" and call.kind == "post" and self._posted(call) > 1:
            call = replace(call, amount=self._posted(call) - 1)
        else:
            call = replace(call, entry_type=LedgerEntryType.ADJUSTMENT)
        with pytest.raises(TransferConflict):
            self._call(call)

    def _posted(self, call: Call) -> int:
        hold = next(h for h in self.holds if h.id == call.pending_id)
        return hold.amount if call.amount is None else call.amount

    # --- the check -------------------------------------------------------------------------------

    @invariant()
    def database_matches_model(self) -> None:
        observed = self._run(self._observe())
        totals, transfers, entries, wallets, problems = observed
        for account_id, expected in self.totals.items():
            assert totals[account_id] == tuple(expected), account_id
        assert all(sum(t) == 0 for a, t in totals.items() if a not in self.totals)
        assert (transfers, entries) == (self.transfers, self.entries)
        for name, balance in wallets.items():
            dp, cp, dpe, _ = self._account(self.wallets[name])
            assert balance == ledger.WalletBalance(cp - dp, cp - dp - dpe, dpe, self.limits[name], CURRENCY)
            assert balance.available_minor >= -self.limits[name]
        assert problems == []

    async def _observe(
        self,
    ) -> tuple[dict[uuid.UUID, tuple[int, ...]], int, int, dict[str, ledger.WalletBalance], list[str]]:
        async with self.books.sessions() as session:
            # Every account's totals, a wallet's cached and a platform account's derived alike.
            totals = {
                account_id: tuple(values)
                for account_id, *values in await session.execute(select(ACCOUNT_TOTALS))
            }
            by_id = {a.id: a for a in (await session.scalars(select(Account))).all()}
            wallets = {
                name: await ledger.wallet_balance(session, by_id[i]) for name, i in self.wallets.items()
            }
            transfers = await session.scalar(select(func.count()).select_from(Transfer)) or 0
            entries = await session.scalar(select(func.count()).select_from(VendorLedgerEntry)) or 0
            return totals, transfers, entries, wallets, await ledger.check_invariants(session)


def test_ledger_matches_its_model(postgres: Postgres) -> None:
    # The machine is synchronous; it drives the async ledger through a loop of its own.
    loop = asyncio.new_event_loop()
    machine: type[LedgerMachine] = type(
        "LedgerMachineRun", (LedgerMachine,), {"loop": loop, "postgres": postgres}
    )
    try:
        run_state_machine_as_test(
            machine,
            settings=settings(
                max_examples=30,
                stateful_step_count=25,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
                database=None,
            ),
        )
    finally:
        loop.close()
