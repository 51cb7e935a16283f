"""Provisioning at eSIM Go. These run on their own task queue, whose server-side rate limit keeps all
workers together under the supplier's 10 requests/s.

eSIM Go takes no idempotency key, so exactly-once is ours to keep, per call: one `POST /orders` of one or
more lines, a line per order (orders waiting together are bought in one call, `PLACE_SUPPLIER_BATCH`; an
order alone is a call of one line, `PLACE_SUPPLIER_ORDER`). Before a call is sent, its rows record it (call
id, each row's line, when it was sent) in one conditional update, so two attempts never both send for a
row; the moment the supplier answers, every row records the reference. A call that got no definite answer
(a timeout, a dropped connection, a crash of the worker) stays "in doubt": its retry waits until the
supplier can have committed it (`ESIMGO_COMMIT_DELAY_SECONDS`), then looks once for a supplier order whose
lines are exactly the call's (bundle, quantity, and the eSIMs of a top-up, line by line) and adopts it for
all its rows at once instead of buying again. A reference's line can belong to one of our orders only
(unique index), so two retries never adopt the same one. A purchase that commits later still is found by
reconciliation. Definite refusals (429, 503, 4xx) clear the doubt, so an outage costs one request per
attempt, not a scan as well.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Select, Update, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contracts import (
    BATCH_REFUSED,
    FETCH_INSTALL_DETAILS,
    IN_DOUBT_ELSEWHERE,
    ORDER_NOT_BUYING,
    PLACE_SUPPLIER_BATCH,
    PLACE_SUPPLIER_ORDER,
    REFERENCE_LOST,
    RELEASE_SUPPLIER_ORDER,
    REVOKE_BUNDLES,
    EsimInstall,
    LineOutcome,
    OrderInput,
    RevokeBundle,
    SupplierBatch,
    SupplierOrderRef,
)
from activities.heartbeat import heartbeating
from activities.supplier_errors import as_application_error
from ttelgo import operator_findings
from ttelgo.esimgo import (
    EsimGoClient,
    PermanentReason,
    SupplierError,
    SupplierOrder,
    SupplierPermanentError,
    SupplierRetryableError,
)
from ttelgo.esimgo.types import BundleUsage, EsimProfile, PurchaseLine
from ttelgo.models import (
    Esim,
    EsimBundle,
    EsimStatus,
    FindingKind,
    Order,
    OrderKind,
    ReconciliationFinding,
)

CLOCK_SKEW = timedelta(seconds=30)
SPENT_SUPPLIER_ORDERS = (FindingKind.SUPPLIER_ORDER_REVOKED, FindingKind.SUPPLIER_BUNDLE_USED)
FINISHED = frozenset({"revoked", "expired", "lapsed"})  # bundle states with nothing left to revoke
USED_STATES = frozenset({"active", "depleted"})  # started: eSIM Go revokes an unused one of a name first


@dataclass(frozen=True)
class _Row:
    """An order row's purchase, as read: its supplier order (and line), or the call it was last sent in."""

    order_id: uuid.UUID
    reference: str | None
    line: int
    call_id: uuid.UUID | None
    sent_at: datetime | None
    purchase: PurchaseLine
    closed: bool  # the order gave up on the supplier: nothing may be bought for it


class _RowMoved(Exception):
    """A row is not as read: the transaction changing it (with its others) rolls back."""


class SupplierActivities:
    def __init__(
        self,
        esimgo: EsimGoClient,
        sessions: async_sessionmaker[AsyncSession],
        commit_delay: timedelta = timedelta(minutes=2),
    ) -> None:
        self.esimgo = esimgo
        self.sessions = sessions
        self.commit_delay = commit_delay

    @activity.defn(name=PLACE_SUPPLIER_ORDER)
    async def place_order(self, order: OrderInput) -> SupplierOrderRef:
        """Buys one order's bundles: a call of one line."""
        [outcome] = await self._place([order.order_id], call_id=None)
        if outcome.ref is None:  # a reference eSIM Go no longer knows: nothing else stops a lone order
            raise ApplicationError(outcome.reason or "", type=outcome.code, non_retryable=True)
        return outcome.ref

    @activity.defn(name=PLACE_SUPPLIER_BATCH)
    async def place_batch(self, batch: SupplierBatch) -> list[LineOutcome]:
        """Buys a batch's orders in one supplier order, a line each; outcomes in the batch's order."""
        return await self._place(batch.order_ids, call_id=batch.batch_id)

    @activity.defn(name=FETCH_INSTALL_DETAILS)
    async def fetch_install_details(self, ref: SupplierOrderRef) -> list[EsimInstall]:
        try:
            placed = await self._own_order(ref.reference)
            if not placed.completed:
                # Large orders complete asynchronously at the supplier: come back after the usual backoff.
                raise ApplicationError("supplier order still processing", type="SupplierProcessing")
            if len(placed.lines) > 1:
                profiles = await esims_of_line(self.esimgo, placed, ref.line)
            else:
                profiles = await self.esimgo.get_assignments(ref.reference)
        except SupplierError as exc:
            raise as_application_error(exc) from exc
        return [_install(p) for p in profiles]

    @activity.defn(name=REVOKE_BUNDLES)
    async def revoke_bundles(self, bundles: list[RevokeBundle]) -> int:
        """Revokes each bundle not revoked yet, refunding our supplier balance where eSIM Go allows it
        (unused, within its window). The supplier's state is read first, so a retry revokes nothing twice."""
        revoked = 0
        try:
            for bundle in bundles:
                usages = await self.esimgo.get_esim_bundles(bundle.iccid)
                live = [u for u in usages if u.name == bundle.bundle_name and u.state not in FINISHED]
                if live:
                    await self.esimgo.revoke_bundle(bundle.iccid, bundle.bundle_name, refund_to_balance=True)
                    revoked += 1
                async with self.sessions() as session, session.begin():
                    await session.execute(
                        update(Esim)
                        .where(Esim.iccid == bundle.iccid)
                        .values(status=EsimStatus.REVOKED, bundle_state="revoked")
                    )
        except SupplierError as exc:
            raise as_application_error(exc) from exc
        return revoked

    @activity.defn(name=RELEASE_SUPPLIER_ORDER)
    async def release_order(self, order_id: uuid.UUID) -> int:
        """Revokes the live bundles a failed order bought: its line of its supplier order, never another
        order's line of it. ICCIDs another of our orders holds are left to an operator: there the supplier's
        own data is in question."""
        async with self.sessions() as session:
            order = await session.get_one(Order, order_id)
            reference, bundle_name, line = (
                order.supplier_order_reference,
                order.bundle_code,
                order.supplier_order_line,
            )
        if not reference:
            return 0
        if order.kind is OrderKind.TOPUP:
            return await self._release_topup(order)
        try:
            try:
                bought = await self.esimgo.get_order(reference)
            except SupplierPermanentError as exc:
                if exc.reason is PermanentReason.NOT_FOUND:
                    activity.logger.error("supplier order %s of order %s not found", reference, order_id)
                    return 0
                raise
            esims = await esims_of_line(self.esimgo, bought, line)  # a neighbour line's are not ours
        except SupplierError as exc:
            raise as_application_error(exc) from exc
        iccids = [e.iccid for e in esims]
        async with self.sessions() as session:
            others = set(
                await session.scalars(
                    select(Esim.iccid).where(Esim.iccid.in_(iccids), Esim.order_id != order_id)
                )
            )
        if others:
            activity.logger.error(
                "order %s: not revoking %d eSIM(s) other orders hold", order_id, len(others)
            )
        return await self.revoke_bundles(
            [RevokeBundle(iccid=i, bundle_name=bundle_name) for i in iccids if i not in others]
        )

    async def _place(self, order_ids: list[uuid.UUID], call_id: uuid.UUID | None) -> list[LineOutcome]:
        async with heartbeating():
            try:
                return await self._place_once(order_ids, call_id)
            except SupplierError as exc:
                raise as_application_error(exc) from exc

    async def _place_once(self, order_ids: list[uuid.UUID], call_id: uuid.UUID | None) -> list[LineOutcome]:
        """One attempt at the call buying `order_ids`, a line each. `call_id` None: one order alone, whose
        doubt (if any) is its own last call's, whatever that was; else the batch's call, which leaves out a
        row in doubt in another call (that order then buys alone)."""
        now = datetime.now(UTC)
        rows = await self._lock(order_ids, now)
        closed = [r for r in rows if r.closed]  # its money is given back: nothing more is bought for it
        outcomes = {r.order_id: _not_buying(r.order_id) for r in closed}
        outcomes |= await self._bought([r for r in rows if r.reference and not r.closed])
        waiting = [r for r in rows if not r.reference and not r.closed]
        in_doubt = [r for r in waiting if r.sent_at and (call_id is None or r.call_id == call_id)]
        for row in waiting:
            if row.sent_at and row not in in_doubt:
                outcomes[row.order_id] = LineOutcome(
                    order_id=row.order_id,
                    code=IN_DOUBT_ELSEWHERE,
                    reason=f"its line waits on the answer to supplier call {row.call_id}",
                )
        if in_doubt:
            outcomes |= await self._resolve_doubt(in_doubt, now)
        to_send = [r for r in waiting if r.order_id not in outcomes]
        if to_send:
            try:
                outcomes |= await self._send(to_send, call_id or uuid.uuid4())
            except SupplierPermanentError as exc:  # one line sent (more would be BATCH_REFUSED)
                if call_id is None:
                    raise
                # The one line sent from a batch was refused: its order's answer, not its neighbours'.
                refused = as_application_error(exc)
                [row] = to_send
                outcomes[row.order_id] = LineOutcome(
                    order_id=row.order_id, code=refused.type, reason=refused.message, final=True
                )
        held = {o.ref.reference for o in outcomes.values() if o.ref is not None}
        for order_id in await self._return_lines_of_closed(
            held | {r.reference for r in closed if r.reference}
        ):
            outcomes[order_id] = _not_buying(order_id)
        return [outcomes[i] for i in order_ids]

    async def _return_lines_of_closed(self, references: set[str]) -> list[uuid.UUID]:
        """Orders holding a line of these supplier orders although they gave up (a call sent before the
        order closed its row, answered after; or a neighbour's that adopted the whole call): their lines go
        back to eSIM Go here, since the order's own release may have run already. A failure never fails the
        neighbours' call: it becomes a finding for an operator (and is tried again whenever a call meets the
        row)."""
        if not references:
            return []
        async with self.sessions() as session:
            closed = list(
                await session.scalars(
                    select(Order.id).where(
                        Order.supplier_order_reference.in_(references), Order.supplier_closed_at.is_not(None)
                    )
                )
            )
        for order_id in closed:
            try:
                await self.release_order(order_id)
            except (SupplierError, ApplicationError) as exc:
                activity.logger.error("order %s gave up; its bought line not returned: %s", order_id, exc)
                async with self.sessions() as session, session.begin():
                    await operator_findings.report(
                        session,
                        "supplier-batch",
                        FindingKind.BOUGHT_LINE_NOT_RETURNED,
                        str(order_id),
                        order_id=order_id,
                        detail={"reason": str(exc)[:500]},
                    )
        return closed

    async def _lock(self, order_ids: list[uuid.UUID], now: datetime) -> list[_Row]:
        """The rows as they are (locked in id order, so two calls over shared rows never deadlock)."""
        assert len(set(order_ids)) == len(order_ids), "an order appears twice in one call"
        async with self.sessions() as session, session.begin():
            found = {
                o.id: o
                for o in await session.scalars(
                    select(Order).where(Order.id.in_(order_ids)).order_by(Order.id).with_for_update()
                )
            }
            assert found.keys() == set(order_ids), f"orders without a record: {set(order_ids) - found.keys()}"
            for row in found.values():
                if row.provisioning_started_at is None:
                    row.provisioning_started_at = now
            return [_row(found[i]) for i in order_ids]

    async def _bought(self, rows: list[_Row]) -> dict[uuid.UUID, LineOutcome]:
        """Rows holding a reference: each its own line of that supplier order (read once per reference)."""
        outcomes: dict[uuid.UUID, LineOutcome] = {}
        for reference in dict.fromkeys(r.reference for r in rows if r.reference):
            holders = [r for r in rows if r.reference == reference]
            try:
                placed = await self._own_order(reference)
            except ApplicationError as exc:
                if exc.type != REFERENCE_LOST:
                    raise
                for row in holders:
                    outcomes[row.order_id] = LineOutcome(
                        order_id=row.order_id, code=REFERENCE_LOST, reason=exc.message, final=True
                    )
                continue
            for row in holders:
                outcomes[row.order_id] = LineOutcome(order_id=row.order_id, ref=_ref(placed, row.line))
        return outcomes

    async def _resolve_doubt(self, in_doubt: list[_Row], now: datetime) -> dict[uuid.UUID, LineOutcome]:
        """Rows whose last call (one call: theirs) got no answer. Once the supplier can have committed it,
        the supplier order that is exactly that call is adopted for all its rows; none: nothing was bought."""
        sent_at = max(r.sent_at for r in in_doubt if r.sent_at)
        settled_at = sent_at + self.commit_delay
        if now < settled_at:
            raise ApplicationError(
                f"an earlier order call got no answer; waiting until {settled_at:%H:%M:%S} UTC, when the "
                "supplier can have committed it, before looking for it",
                type="SupplierCallInDoubt",
                next_retry_delay=settled_at - now,
            )
        call = await self._composition(in_doubt[0])
        placed = await self._adopt_orphan(call, sent_at)
        if placed is None:
            return {}
        mine = {r.order_id for r in in_doubt}
        return {
            r.order_id: LineOutcome(order_id=r.order_id, ref=_ref(placed, r.line))
            for r in call
            if r.order_id in mine
        }

    async def _composition(self, row: _Row) -> list[_Row]:
        """What `row`'s call asked eSIM Go for. A row from before calls had ids was its call alone."""
        if row.call_id is None:
            return [row]
        async with self.sessions() as session:
            return [_row(o) for o in await session.scalars(call_rows(row.call_id))]

    async def _send(self, rows: list[_Row], call_id: uuid.UUID) -> dict[uuid.UUID, LineOutcome]:
        sent_at = datetime.now(UTC)  # after any scan: the wait counts from here
        if not await self._mark(rows, call_id, sent_at):
            raise ApplicationError(
                "another attempt changed these orders' supplier call meanwhile; starting over",
                type="SupplierCallRaced",
            )
        try:
            placed = await self.esimgo.create_order_lines([r.purchase for r in rows])
        except SupplierError as exc:
            if not (isinstance(exc, SupplierRetryableError) and exc.in_doubt):  # refused: nothing bought
                await self._clear(rows, call_id, sent_at)
            if isinstance(exc, SupplierPermanentError) and len(rows) > 1:
                # Which line eSIM Go objects to, it does not say: each line is tried alone next.
                raise ApplicationError(
                    f"eSIM Go refused an order of {len(rows)} lines: {exc.message}",
                    type=BATCH_REFUSED,
                    non_retryable=True,
                ) from exc
            raise
        lines = {r.order_id: i for i, r in enumerate(rows)}
        if not await claim_supplier_lines(self.sessions, placed.reference, lines, call_id=call_id):
            raise ApplicationError(
                f"supplier order {placed.reference} could not be recorded", type="ClaimFailed"
            )
        return {r.order_id: LineOutcome(order_id=r.order_id, ref=_ref(placed, i)) for i, r in enumerate(rows)}

    async def _mark(self, rows: list[_Row], call_id: uuid.UUID, sent_at: datetime) -> bool:
        """Records the call about to be sent on all its rows, or on none if any row is not as read (another
        attempt got there first): so never two calls for one row."""
        return await _update_all_or_none(
            self.sessions,
            [
                update(Order)
                .where(
                    Order.id == row.order_id,
                    Order.supplier_order_reference.is_(None),
                    Order.supplier_batch_id.is_not_distinct_from(row.call_id),
                    Order.supplier_call_sent_at.is_not_distinct_from(row.sent_at),
                    Order.supplier_closed_at.is_(None),
                )
                .values(supplier_batch_id=call_id, supplier_order_line=line, supplier_call_sent_at=sent_at)
                for line, row in enumerate(rows)
            ],
        )

    async def _clear(self, rows: list[_Row], call_id: uuid.UUID, sent_at: datetime) -> None:
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(Order)
                .where(
                    Order.id.in_([r.order_id for r in rows]),
                    Order.supplier_batch_id == call_id,
                    Order.supplier_call_sent_at == sent_at,
                    Order.supplier_order_reference.is_(None),
                )
                .values(supplier_call_sent_at=None)
            )

    async def _release_topup(self, order: Order) -> int:
        """Gives back the bundle a top-up put on its eSIM (a failed one's, or a refunded one's): the eSIM and
        every other bundle on it stay. Which assignment is this order's is recorded before the revoke, so a
        retry finds it finished and revokes nothing twice. eSIM Go revokes by name (its oldest unused
        assignment, else its latest): when that would take another order's bundle, an operator decides."""
        assert order.target_iccid is not None
        iccid, name = order.target_iccid, order.bundle_code
        try:
            usages = await self.esimgo.get_esim_bundles(iccid)
        except SupplierPermanentError as exc:
            if exc.reason is PermanentReason.NOT_FOUND:  # the eSIM is gone: nothing of ours is live on it
                return 0
            raise as_application_error(exc) from exc
        except SupplierError as exc:
            raise as_application_error(exc) from exc
        named = sorted((u for u in usages if u.name == name), key=_assigned)
        async with self.sessions() as session, session.begin():
            esim_id = await session.scalar(select(Esim.id).where(Esim.iccid == iccid))
            if esim_id is None:
                return 0
            target = await _assignment_of(session, order, esim_id, named)
        if target is None or target.state in FINISHED:
            return 0
        live = [u for u in named if u.state not in FINISHED]
        unused = [u for u in live if u.state not in USED_STATES]
        taken = unused[0] if unused else live[-1]
        if taken.reference != target.reference:
            async with self.sessions() as session, session.begin():
                await operator_findings.report(
                    session,
                    "topup-release",
                    FindingKind.TOPUP_BUNDLE_NOT_REVOKED,
                    str(order.id),
                    order_id=order.id,
                    detail={
                        "iccid": iccid,
                        "bundle_name": name,
                        "assignment_reference": target.reference,
                        "would_revoke": taken.reference,
                        "reason": "eSIM Go revokes by name: it would take another order's bundle",
                    },
                )
            activity.logger.error(
                "top-up %s: eSIM Go would revoke another order's bundle of that name; left to an operator",
                order.id,
            )
            return 0
        try:
            await self.esimgo.revoke_bundle(iccid, name, refund_to_balance=True)
        except SupplierError as exc:
            raise as_application_error(exc) from exc
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(EsimBundle)
                .where(EsimBundle.esim_id == esim_id, EsimBundle.reference == target.reference)
                .values(state="revoked")
            )
        return 1

    async def _own_order(self, reference: str) -> SupplierOrder:
        """A supplier order the supplier itself gave us: if it no longer knows it, an operator must look."""
        try:
            return await self.esimgo.get_order(reference)
        except SupplierPermanentError as exc:
            if exc.reason is not PermanentReason.NOT_FOUND:
                raise
            raise ApplicationError(
                f"eSIM Go no longer knows its order {reference}: {exc.message}",
                type=REFERENCE_LOST,
                non_retryable=True,
            ) from exc

    async def _adopt_orphan(self, call: list[_Row], sent_at: datetime) -> SupplierOrder | None:
        """Claims, for all of `call`'s rows at once, a supplier order placed since `sent_at` that is exactly
        that call, not claimed and not spent by reconciliation; None when there is none."""
        if [r.line for r in call] != list(range(len(call))):
            return None  # a row has left the call (it bought alone since): no supplier order is it now
        wanted = [r.purchase for r in call]
        candidates = await self.esimgo.recent_orders(sent_at - CLOCK_SKEW)
        shaped = [o for o in candidates if is_purchase_of(o, wanted, held=set())]
        if not shaped:
            return None
        references = [o.reference for o in shaped]
        async with self.sessions() as session:
            # An eSIM we hold already was topped up by that purchase: never the answer to a line of new eSIMs.
            held = set(
                await session.scalars(
                    select(Esim.iccid).where(Esim.iccid.in_({e.iccid for o in shaped for e in o.esims}))
                )
            )
            claimed = set(
                await session.scalars(
                    select(Order.supplier_order_reference).where(
                        Order.supplier_order_reference.in_(references)
                    )
                )
            )
            # One reconciliation has revoked (or found used) is no order to deliver.
            spent = set(
                await session.scalars(
                    select(ReconciliationFinding.subject).where(
                        ReconciliationFinding.subject.in_(references),
                        ReconciliationFinding.kind.in_(SPENT_SUPPLIER_ORDERS),
                    )
                )
            )
        lines = {r.order_id: r.line for r in call}
        for candidate in sorted(shaped, key=lambda o: o.created_at or sent_at):
            if (
                candidate.reference not in claimed | spent
                and is_purchase_of(candidate, wanted, held=held)
                and await claim_supplier_lines(
                    self.sessions, candidate.reference, lines, call_id=call[0].call_id
                )
            ):
                activity.logger.warning(
                    "adopted supplier order %s (%d line(s)) after an interrupted attempt",
                    candidate.reference,
                    len(call),
                )
                return await self.esimgo.get_order(candidate.reference)
        return None


async def claim_supplier_lines(
    sessions: async_sessionmaker[AsyncSession],
    reference: str,
    lines: Mapping[uuid.UUID, int],
    *,
    call_id: uuid.UUID | None = None,
) -> bool:
    """Records a supplier order as these orders', each at its line, all or none: not if one of them has a
    supplier order already, another order holds one of the lines, or (with `call_id`) one of them has left
    that call meanwhile."""
    in_call = [Order.supplier_batch_id == call_id] if call_id is not None else []
    return await _update_all_or_none(
        sessions,
        [
            update(Order)
            .where(Order.id == order_id, Order.supplier_order_reference.is_(None), *in_call)
            .values(supplier_order_reference=reference, supplier_order_line=line, supplier_call_sent_at=None)
            for order_id, line in lines.items()
        ],
    )


async def _update_all_or_none(sessions: async_sessionmaker[AsyncSession], updates: list[Update]) -> bool:
    """Each update must change its one row, in one transaction: else none does (False). A row held by
    another order's line (the unique index) is a row not as expected too."""
    try:
        async with sessions() as session, session.begin():
            for statement in updates:
                if (await session.execute(statement)).rowcount != 1:
                    raise _RowMoved
    except (_RowMoved, IntegrityError):
        return False
    return True


def is_purchase_of(supplier: SupplierOrder, wanted: Sequence[PurchaseLine], *, held: set[str]) -> bool:
    """The supplier order is exactly the purchase `wanted`, line by line: the same bundle and quantity; a
    top-up's line put its bundle on its own eSIMs and on no other, a line of new eSIMs on none in `held`
    (eSIMs we hold already)."""
    if len(supplier.lines) != len(wanted):
        return False
    for line, want in zip(supplier.lines, wanted, strict=True):
        got = {e.iccid for e in line.esims}
        if (line.bundle_name, line.quantity) != (want.bundle_name, want.quantity):
            return False
        if (got != set(want.iccids)) if want.iccids else bool(got & held):
            return False
    return True


async def esims_of_line(esimgo: EsimGoClient, placed: SupplierOrder, line: int) -> Sequence[EsimProfile]:
    """The eSIMs one line of a supplier order assigned. A one-line order that does not list them has them
    in its assignments; those of a multi-line order do not say which line each came from, so it must."""
    if len(placed.lines) <= 1:
        return placed.esims or await esimgo.get_assignments(placed.reference)
    if line >= len(placed.lines) or not placed.lines[line].esims:
        raise ApplicationError(
            f"supplier order {placed.reference} lists no eSIMs for its line {line} yet",
            type="SupplierProcessing",
        )
    return placed.lines[line].esims


def call_rows(call_id: uuid.UUID) -> Select[tuple[Order]]:
    """The rows still in doubt in a call, by line: a row leaves it when it gets a reference, when a
    refusal clears the doubt, or when it is sent again in another call."""
    return (
        select(Order)
        .where(
            Order.supplier_batch_id == call_id,
            Order.supplier_call_sent_at.is_not(None),
            Order.supplier_order_reference.is_(None),
        )
        .order_by(Order.supplier_order_line)
    )


def purchase_of(order: Order) -> PurchaseLine:
    """What an order asks eSIM Go for: its bundles, put on its own eSIM for a top-up."""
    iccids = (order.target_iccid,) if order.kind is OrderKind.TOPUP and order.target_iccid else ()
    return PurchaseLine(bundle_name=order.bundle_code, quantity=order.quantity, iccids=iccids)


def _not_buying(order_id: uuid.UUID) -> LineOutcome:
    return LineOutcome(
        order_id=order_id, code=ORDER_NOT_BUYING, reason="the order gave up on the supplier", final=True
    )


def _row(order: Order) -> _Row:
    return _Row(
        order_id=order.id,
        reference=order.supplier_order_reference,
        line=order.supplier_order_line,
        call_id=order.supplier_batch_id,
        sent_at=order.supplier_call_sent_at,
        purchase=purchase_of(order),
        closed=order.supplier_closed_at is not None,
    )


def _install(profile: EsimProfile) -> EsimInstall:
    return EsimInstall(
        iccid=profile.iccid, matching_id=profile.matching_id, smdp_address=profile.smdp_address
    )


def _ref(order: SupplierOrder, line: int) -> SupplierOrderRef:
    """An order's part of a supplier order: its line's eSIMs only."""
    esims = order.lines[line].esims if line < len(order.lines) else ()
    return SupplierOrderRef(
        reference=order.reference, completed=order.completed, esims=[_install(e) for e in esims], line=line
    )


def _assigned(usage: BundleUsage) -> datetime:
    return usage.assigned_at or datetime.min.replace(tzinfo=UTC)


async def _assignment_of(
    session: AsyncSession, order: Order, esim_id: uuid.UUID, named: list[BundleUsage]
) -> BundleUsage | None:
    """The assignment (of `named`, the eSIM's assignments of the order's bundle, oldest first) this top-up
    put there, recorded on its bundle row. Unless a report recorded it already: assignments no other order's
    row names, matched in time order to our orders of that bundle on the eSIM that no row names either
    (the one that sold it, then each top-up that reached the supplier)."""
    rows = list(
        await session.execute(
            select(EsimBundle.order_id, EsimBundle.reference).where(
                EsimBundle.esim_id == esim_id, EsimBundle.name == order.bundle_code
            )
        )
    )
    mine = next((ref for owner, ref in rows if owner == order.id and ref), None)
    if mine is not None:
        return next((u for u in named if u.reference == mine), None)
    named_by_others = {owner: ref for owner, ref in rows if owner not in (None, order.id) and ref}
    orders = list(
        await session.scalars(
            select(Order.id)
            .where(
                Order.bundle_code == order.bundle_code,
                or_(
                    Order.id == select(Esim.order_id).where(Esim.id == esim_id).scalar_subquery(),
                    (Order.kind == OrderKind.TOPUP)
                    & (Order.target_iccid == order.target_iccid)
                    & Order.supplier_order_reference.is_not(None),
                ),
            )
            .order_by(Order.created_at, Order.id)
        )
    )
    unnamed = [o for o in orders if o not in named_by_others]
    free = [u for u in named if u.reference not in named_by_others.values()]
    rank = unnamed.index(order.id) if order.id in unnamed else len(free)
    if rank >= len(free):
        return None
    target = free[rank]
    if target.reference:
        await _record_assignment(session, order, esim_id, target)
    return target


async def _record_assignment(
    session: AsyncSession, order: Order, esim_id: uuid.UUID, usage: BundleUsage
) -> None:
    """Our top-up's bundle row names its assignment: a row a report created for it (no order) is taken."""
    reported = await session.scalar(
        select(EsimBundle).where(EsimBundle.esim_id == esim_id, EsimBundle.reference == usage.reference)
    )
    own = await session.scalar(
        select(EsimBundle).where(EsimBundle.esim_id == esim_id, EsimBundle.order_id == order.id)
    )
    if reported is not None and own is None:
        reported.order_id = order.id
    elif reported is None and own is not None:
        own.reference = usage.reference
    elif reported is None:
        session.add(
            EsimBundle(
                id=uuid.uuid4(),
                esim_id=esim_id,
                order_id=order.id,
                name=usage.name,
                reference=usage.reference,
                state=usage.state or None,
                unlimited=usage.unlimited,
                assigned_at=usage.assigned_at,
            )
        )
