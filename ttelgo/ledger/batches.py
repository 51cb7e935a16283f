"""Concurrent transfers of one process share statements, so one commit serves many of them.

A transfer is sent at once when fewer than MAX_IN_FLIGHT statements are running; otherwise it waits and
goes with everything that queued meanwhile, as one `ledger_apply` call (one transaction, autocommit, one
round trip). On a hot wallet that is the difference: its row lock is held until the commit's WAL flush,
and a batch pays that once. Each transfer keeps its own outcome: a refusal (SQLSTATE class TL) undoes
only its own item. Any other error fails the statement as a whole; then each transfer is rerun alone, one
after another in the failed batch's slot (never more than MAX_IN_FLIGHT sessions), so an error stays with
the transfer that caused it. Exactly-once is the transfer id's, as before: when the answer of a committed
batch is lost, the reruns are replays.

Cancellation: a caller cancelled while its transfer is still queued is dropped, and its transfer is never
sent. Once sent, the transfer stands whatever the caller does (it may already be committed); its id makes
the caller's retry a replay, so a compensation ("void the hold") finds it.

Deadlocks: wallets are locked first, all at once and in id order, so batches never deadlock on wallets.
Transfers that touch no wallet (platform accounts only) lock nothing beforehand; two batches inserting
the same such ids in opposite order can deadlock on the ids' index entries. PostgreSQL then aborts one
(40P01) and it is rerun like a serialization failure (its items replay what the other committed).
"""

from __future__ import annotations

import asyncio
import json
import random
import weakref
from dataclasses import dataclass
from typing import Any

from sqlalchemy import literal_column, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ttelgo.ledger.errors import (
    AccountNotFound,
    InsufficientFunds,
    LedgerError,
    PendingAlreadyResolved,
    PendingNotFound,
    TransferConflict,
)
from ttelgo.models import Transfer

# PostgreSQL caches 64 subtransactions per transaction (one per item); past that every snapshot slows.
MAX_BATCH = 50
MAX_IN_FLIGHT = 2
MAX_ATTEMPTS = 5
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})  # serialization_failure, deadlock_detected

_ERRORS = (literal_column("error_state"), literal_column("error_message"), literal_column("error_detail"))
_APPLY = select(Transfer, *_ERRORS).from_statement(
    text(
        "SELECT (transfer).*, error_state, error_message, error_detail "
        "FROM ledger_apply(CAST(:items AS jsonb)) ORDER BY item_no"
    )
)


@dataclass
class _Call:
    sessions: async_sessionmaker[AsyncSession]
    item: dict[str, Any]
    future: asyncio.Future[Transfer]


class _Batcher:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waiting: list[_Call] = []
        self.in_flight: set[asyncio.Task[None]] = set()

    def dispatch(self) -> None:
        # Queued calls never reached the database: a cancelled caller's transfer is not sent.
        self.waiting = [call for call in self.waiting if not call.future.cancelled()]
        while self.waiting and len(self.in_flight) < MAX_IN_FLIGHT:
            batch, self.waiting = self.waiting[:MAX_BATCH], self.waiting[MAX_BATCH:]
            task = self.loop.create_task(_send(batch))
            self.in_flight.add(task)
            task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self.in_flight.discard(task)
        self.dispatch()


# One batcher per session factory (one database) and event loop.
_BATCHERS: weakref.WeakKeyDictionary[async_sessionmaker[AsyncSession], _Batcher] = weakref.WeakKeyDictionary()


async def submit(sessions: async_sessionmaker[AsyncSession], item: dict[str, Any]) -> Transfer:
    """`item` (the arguments of ledger_create_transfer or ledger_resolve_pending, by name) applied,
    alone or with others; returns the transfer (detached) or raises the ledger's refusal."""
    loop = asyncio.get_running_loop()
    batcher = _BATCHERS.get(sessions)
    if batcher is None or batcher.loop is not loop:
        batcher = _BATCHERS[sessions] = _Batcher(loop)
    call = _Call(sessions, item, loop.create_future())
    batcher.waiting.append(call)
    batcher.dispatch()
    return await call.future


async def _send(batch: list[_Call]) -> None:
    try:
        outcomes = await _apply(batch[0].sessions, [call.item for call in batch])
    except Exception as exc:
        if len(batch) == 1:
            _settle(batch[0], exc)
        else:
            # One by one in this batch's slot: a batch that failed with a lost connection must not open
            # a session per item. A cancelled caller's item is not rerun: nobody waits for it (and if the
            # batch did commit, it stands).
            for call in batch:
                if not call.future.cancelled():
                    await _send([call])
        return
    except BaseException:
        for call in batch:
            call.future.cancel()
        raise
    for call, outcome in zip(batch, outcomes, strict=True):
        _settle(call, outcome)


def _settle(call: _Call, outcome: Transfer | BaseException) -> None:
    if call.future.done():  # the caller was cancelled after sending; the transfer stands (module docstring)
        return
    if isinstance(outcome, BaseException):
        call.future.set_exception(outcome)
    else:
        call.future.set_result(outcome)


async def _apply(
    sessions: async_sessionmaker[AsyncSession], items: list[dict[str, Any]]
) -> list[Transfer | LedgerError]:
    """One `ledger_apply` statement in autocommit, rerun on 40001/40P01 with jittered backoff."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            async with sessions() as session:
                await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
                rows = (await session.execute(_APPLY, {"items": json.dumps(items)})).all()
                # Detached, so callers get loaded attributes whatever expire_on_commit is.
                session.expunge_all()
                return [
                    transfer if state is None else _refusal(state, message, detail)
                    for transfer, state, message, detail in rows
                ]
        except DBAPIError as exc:
            sqlstate = getattr(exc.orig, "sqlstate", None)
            if sqlstate not in RETRYABLE_SQLSTATES or attempt == MAX_ATTEMPTS:
                raise
            await asyncio.sleep(random.uniform(0.005, 0.02) * 2 ** (attempt - 1))
    raise AssertionError("unreachable: the last attempt returns or raises")


def _refusal(sqlstate: str, message: str, detail: str | None) -> LedgerError:
    """The ledger's error for a TL00x raised by the functions: their message, details as JSON."""
    details: dict[str, Any] = json.loads(detail) if detail else {}
    if sqlstate == "TL001":
        postpaid = details["postpaid"]
        limit = f" and a credit limit of {details['credit_limit_minor']}" if postpaid else ""
        return InsufficientFunds(
            f"{message}{limit}; {details['requested_minor']} requested",
            code="CREDIT_LIMIT_EXCEEDED" if postpaid else "INSUFFICIENT_FUNDS",
            available_minor=details["available_minor"],
            requested_minor=details["requested_minor"],
        )
    refusals: dict[str, type[LedgerError]] = {
        "TL002": AccountNotFound,
        "TL003": TransferConflict,
        "TL004": PendingNotFound,
        "TL005": PendingAlreadyResolved,
    }
    return refusals.get(sqlstate, LedgerError)(message, extra=details or None)
