"""Provisioning at eSIM Go. These run on their own task queue, whose server-side rate limit keeps all
workers together under the supplier's 10 requests/s.

eSIM Go takes no idempotency key, so exactly-once is ours to keep. The order row records when an order
call was sent and, the moment the supplier answers, its reference. A call that got no definite answer (a
timeout, a dropped connection, a crash of the worker) stays "in doubt": its retry waits until the supplier
can have committed it (`ESIMGO_COMMIT_DELAY_SECONDS`), then looks once for the supplier order it may have
placed and adopts it instead of buying again. Orders of the same bundle and quantity are interchangeable,
and a reference can belong to one of our orders only (unique index), so two retries never adopt the same
one. A purchase that commits later still is found by reconciliation. Definite refusals (429, 503, 4xx)
clear the doubt, so an outage costs one request per attempt, not a scan as well.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contracts import (
    FETCH_INSTALL_DETAILS,
    PLACE_SUPPLIER_ORDER,
    REFERENCE_LOST,
    RELEASE_SUPPLIER_ORDER,
    REVOKE_BUNDLES,
    EsimInstall,
    OrderInput,
    RevokeBundle,
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
from ttelgo.esimgo.types import BundleUsage
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
        async with heartbeating():
            try:
                return await self._place_once(order)
            except SupplierError as exc:
                raise as_application_error(exc) from exc

    @activity.defn(name=FETCH_INSTALL_DETAILS)
    async def fetch_install_details(self, ref: SupplierOrderRef) -> list[EsimInstall]:
        try:
            if not ref.completed and not (await self._own_order(ref.reference)).completed:
                # Large orders complete asynchronously at the supplier: come back after the usual backoff.
                raise ApplicationError("supplier order still processing", type="SupplierProcessing")
            profiles = await self.esimgo.get_assignments(ref.reference)
        except SupplierError as exc:
            raise as_application_error(exc) from exc
        return [
            EsimInstall(iccid=p.iccid, matching_id=p.matching_id, smdp_address=p.smdp_address)
            for p in profiles
        ]

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
        """Revokes the live bundles a failed order bought. ICCIDs another of our orders holds are left to
        an operator: there the supplier's own data is in question."""
        async with self.sessions() as session:
            order = await session.get_one(Order, order_id)
            reference, bundle_name = order.supplier_order_reference, order.bundle_code
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
            esims = bought.esims or await self.esimgo.get_assignments(reference)
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

    async def _place_once(self, order: OrderInput) -> SupplierOrderRef:
        now = datetime.now(UTC)
        async with self.sessions() as session, session.begin():
            row = await session.scalar(select(Order).where(Order.id == order.order_id).with_for_update())
            assert row is not None, f"order {order.order_id} has no record"
            reference, sent_at = row.supplier_order_reference, row.supplier_call_sent_at
            if row.provisioning_started_at is None:
                row.provisioning_started_at = now
        if reference:
            return _ref(await self._own_order(reference))
        if sent_at is not None:
            settled_at = sent_at + self.commit_delay
            if now < settled_at:
                raise ApplicationError(
                    f"an earlier order call got no answer; waiting until {settled_at:%H:%M:%S} UTC, when the "
                    "supplier can have committed it, before looking for it",
                    type="SupplierCallInDoubt",
                    next_retry_delay=settled_at - now,
                )
            adopted = await self._adopt_orphan(order, sent_at)
            if adopted:
                return adopted
        await self._mark_call(
            order.order_id, sent_at=datetime.now(UTC)
        )  # after any scan: the wait counts from here
        try:
            placed = await self.esimgo.create_order(
                order.bundle_code,
                order.quantity,
                iccids=[order.target_iccid] if order.kind is OrderKind.TOPUP and order.target_iccid else None,
            )
        except SupplierError as exc:
            if not (isinstance(exc, SupplierRetryableError) and exc.in_doubt):  # refused: nothing bought
                await self._mark_call(order.order_id, sent_at=None)
            raise
        if not await claim_supplier_order(self.sessions, order.order_id, placed.reference):
            raise ApplicationError(
                f"supplier order {placed.reference} could not be recorded", type="ClaimFailed"
            )
        return _ref(placed)

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

    async def _mark_call(self, order_id: uuid.UUID, *, sent_at: datetime | None) -> None:
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(Order).where(Order.id == order_id).values(supplier_call_sent_at=sent_at)
            )

    async def _adopt_orphan(self, order: OrderInput, sent_at: datetime) -> SupplierOrderRef | None:
        candidates = await self.esimgo.recent_orders(sent_at - CLOCK_SKEW)
        matching = [o for o in candidates if _same_purchase(o, order)]
        if not matching:
            return None
        references = [o.reference for o in matching]
        async with self.sessions() as session:
            # An eSIM we hold already was topped up by that purchase: never the answer to an order of new eSIMs.
            held = set(
                await session.scalars(
                    select(Esim.iccid).where(Esim.iccid.in_({e.iccid for o in matching for e in o.esims}))
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
        if order.kind is not OrderKind.TOPUP:
            matching = [o for o in matching if not held & {e.iccid for e in o.esims}]
        for candidate in sorted(matching, key=lambda o: o.created_at or sent_at):
            if candidate.reference not in claimed | spent and await claim_supplier_order(
                self.sessions, order.order_id, candidate.reference
            ):
                activity.logger.warning(
                    "adopted supplier order %s after an interrupted attempt", candidate.reference
                )
                return _ref(await self.esimgo.get_order(candidate.reference))
        return None


async def claim_supplier_order(
    sessions: async_sessionmaker[AsyncSession], order_id: uuid.UUID, reference: str
) -> bool:
    """Records a supplier order as this order's, unless the order has one or another order holds it."""
    try:
        async with sessions() as session, session.begin():
            result = await session.execute(
                update(Order)
                .where(Order.id == order_id, Order.supplier_order_reference.is_(None))
                .values(supplier_order_reference=reference, supplier_call_sent_at=None)
            )
            return result.rowcount == 1
    except IntegrityError:
        return False  # another of our orders holds this reference


def _ref(order: SupplierOrder) -> SupplierOrderRef:
    esims = [
        EsimInstall(iccid=e.iccid, matching_id=e.matching_id, smdp_address=e.smdp_address)
        for e in order.esims
    ]
    return SupplierOrderRef(reference=order.reference, completed=order.completed, esims=esims)


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


def _same_purchase(supplier: SupplierOrder, order: OrderInput) -> bool:
    if supplier.bundle_name != order.bundle_code or supplier.quantity != order.quantity:
        return False
    # A top-up is the purchase that put the bundle on its own eSIM, and on no other.
    return order.kind is not OrderKind.TOPUP or {e.iccid for e in supplier.esims} == {order.target_iccid}
