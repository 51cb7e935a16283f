"""Provisioning at eSIM Go. These run on their own task queue, whose server-side rate limit keeps all
workers together under the supplier's 10 requests/s.

eSIM Go takes no idempotency key, so exactly-once is ours to keep: the order row records when the
first attempt began and, the moment the supplier answers, the supplier's reference. A retry that finds
no reference (the worker died mid-call) adopts the matching supplier order placed since then instead
of buying again; orders of the same bundle and quantity are interchangeable, and a reference can
belong to one of our orders only (unique index), so two retries never adopt the same one.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contracts import (
    FETCH_INSTALL_DETAILS,
    PLACE_SUPPLIER_ORDER,
    REVOKE_BUNDLES,
    EsimInstall,
    OrderInput,
    RevokeBundle,
    SupplierOrderRef,
)
from activities.supplier_errors import as_application_error
from ttelgo.esimgo import EsimGoClient, SupplierError, SupplierOrder
from ttelgo.models import Esim, EsimStatus, Order

CLOCK_SKEW = timedelta(seconds=30)
FINISHED = frozenset({"revoked", "expired", "lapsed"})  # bundle states with nothing left to revoke
HEARTBEAT_EVERY_S = 2.0


class SupplierActivities:
    def __init__(self, esimgo: EsimGoClient, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.esimgo = esimgo
        self.sessions = sessions

    @activity.defn(name=PLACE_SUPPLIER_ORDER)
    async def place_order(self, order: OrderInput) -> SupplierOrderRef:
        async with _heartbeating():
            try:
                return await self._place_once(order)
            except SupplierError as exc:
                raise as_application_error(exc) from exc

    @activity.defn(name=FETCH_INSTALL_DETAILS)
    async def fetch_install_details(self, ref: SupplierOrderRef) -> list[EsimInstall]:
        try:
            if not ref.completed and not (await self.esimgo.get_order(ref.reference)).completed:
                # Large orders complete asynchronously at the supplier: come back shortly.
                raise ApplicationError(
                    "supplier order still processing",
                    type="SupplierProcessing",
                    next_retry_delay=timedelta(seconds=1),
                )
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

    async def _place_once(self, order: OrderInput) -> SupplierOrderRef:
        async with self.sessions() as session, session.begin():
            row = await session.scalar(select(Order).where(Order.id == order.order_id).with_for_update())
            assert row is not None, f"order {order.order_id} has no record"
            if row.supplier_order_reference:
                return _ref(await self.esimgo.get_order(row.supplier_order_reference))
            started_at = row.provisioning_started_at
            if started_at is None:
                row.provisioning_started_at = datetime.now(UTC)
        if started_at is not None:
            adopted = await self._adopt_orphan(order, started_at)
            if adopted:
                return adopted
        placed = await self.esimgo.create_order(order.bundle_code, order.quantity)
        if not await self._claim(order.order_id, placed.reference):
            raise ApplicationError(
                f"supplier order {placed.reference} could not be recorded", type="ClaimFailed"
            )
        return _ref(placed)

    async def _adopt_orphan(self, order: OrderInput, started_at: datetime) -> SupplierOrderRef | None:
        candidates = await self.esimgo.recent_orders(started_at - CLOCK_SKEW)
        matching = [o for o in candidates if _same_purchase(o, order)]
        if not matching:
            return None
        async with self.sessions() as session:
            claimed = set(
                await session.scalars(
                    select(Order.supplier_order_reference).where(
                        Order.supplier_order_reference.in_([o.reference for o in matching])
                    )
                )
            )
        for candidate in sorted(matching, key=lambda o: o.created_at or started_at):
            if candidate.reference not in claimed and await self._claim(order.order_id, candidate.reference):
                activity.logger.warning(
                    "adopted supplier order %s after an interrupted attempt", candidate.reference
                )
                return _ref(await self.esimgo.get_order(candidate.reference))
        return None

    async def _claim(self, order_id: uuid.UUID, reference: str) -> bool:
        try:
            async with self.sessions() as session, session.begin():
                result = await session.execute(
                    update(Order)
                    .where(Order.id == order_id, Order.supplier_order_reference.is_(None))
                    .values(supplier_order_reference=reference)
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


def _same_purchase(supplier: SupplierOrder, order: OrderInput) -> bool:
    return supplier.bundle_name == order.bundle_code and supplier.quantity == order.quantity


@contextlib.asynccontextmanager
async def _heartbeating():  # type: ignore[no-untyped-def]
    """Heartbeats while a slow supplier call runs, so a dead worker is noticed in seconds, not minutes."""

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(HEARTBEAT_EVERY_S)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
