"""Order records: the database rows lists and reports read; the workflow is their only writer."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contracts import (
    CREATE_ORDER_RECORD,
    ICCID_CONFLICT,
    INCOMPLETE_DELIVERY,
    SET_ORDER_STATUS,
    STOP_BUYING,
    STORE_ESIMS,
    OrderInput,
    StatusChange,
    StoreEsims,
)
from ttelgo import business_metrics
from ttelgo.models import TERMINAL_ORDER_STATES, Esim, Order, OrderKind, OrderStatus
from ttelgo.models.esims import EsimBundle

log = logging.getLogger(__name__)


class OrderActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    @activity.defn(name=STOP_BUYING)
    async def stop_buying(self, order_id: uuid.UUID) -> None:
        """Closes the order's row to supplier calls (a call's mark and send check it under the row lock), so
        a late batch never buys for an order that has given its money back."""
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(Order)
                .where(Order.id == order_id, Order.supplier_closed_at.is_(None))
                .values(supplier_closed_at=func.now())
            )

    @activity.defn(name=CREATE_ORDER_RECORD)
    async def create_record(self, order: OrderInput) -> None:
        async with self.sessions() as session, session.begin():
            await session.execute(
                insert(Order)
                .values(
                    id=order.order_id,
                    channel=order.channel,
                    kind=order.kind,
                    target_iccid=order.target_iccid,
                    status=OrderStatus.CREATED,
                    user_id=order.user_id,
                    vendor_id=order.vendor_id,
                    bundle_code=order.bundle_code,
                    quantity=order.quantity,
                    unit_price_minor=order.unit_price_minor,
                    total_minor=order.total_minor,
                    currency=order.currency,
                    wholesale_cost_minor=order.wholesale_unit_minor * order.quantity,
                    customer_reference=order.customer_reference,
                    workflow_id=order.workflow_id,
                    client_ip=order.client_ip,
                    user_agent=order.user_agent,
                    billing_mode=order.billing_mode,
                )
                .on_conflict_do_nothing(index_elements=["id"])
            )

    @activity.defn(name=SET_ORDER_STATUS)
    async def set_status(self, change: StatusChange) -> None:
        now = datetime.now(UTC)
        # The failure fields describe the latest move: a paid order no longer shows its earlier decline.
        values: dict[str, object] = {
            "status": change.status,
            "failure_code": change.failure_code,
            "failure_reason": change.failure_reason[:1000] if change.failure_reason else None,
        }
        if change.status is OrderStatus.PAID:
            values["paid_at"] = now
        if change.status is OrderStatus.COMPLETED:
            values["completed_at"] = now
        async with self.sessions() as session, session.begin():
            before = await session.scalar(
                select(Order.status).where(Order.id == change.order_id).with_for_update()
            )
            order = await session.scalar(
                update(Order).where(Order.id == change.order_id).values(**values).returning(Order)
            )
        # Counted once its transaction committed, and only by the attempt that moved it (not by a retry).
        if order is not None and before is not change.status and change.status in TERMINAL_ORDER_STATES:
            business_metrics.order_finished(
                activity.metric_meter(),
                channel=order.channel,
                status=order.status,
                currency=order.currency,
                total_minor=order.total_minor,
                supplier_cost_minor=order.wholesale_cost_minor,
                created_at=order.created_at,
                completed_at=order.completed_at,
            )

    @activity.defn(name=STORE_ESIMS)
    async def store_esims(self, batch: StoreEsims) -> None:
        """Stores the order's eSIMs once (a retry finds them stored). An ICCID that another order holds,
        or fewer eSIMs than were bought, is supplier data we cannot deliver on: the order stops for an
        operator instead of completing without its eSIMs. A top-up stores no eSIM: its bundle went onto
        the eSIM it names, which must be the one delivered."""
        async with self.sessions() as session:
            order = await session.get_one(Order, batch.order_id)
        if order.kind is OrderKind.TOPUP:
            _check_topup_delivery(order, batch)
            await self._attach_topup(order)
            return
        rows = [
            {
                "order_id": batch.order_id,
                "iccid": e.iccid,
                "matching_id": e.matching_id,
                "smdp_address": e.smdp_address,
                "bundle_name": batch.bundle_code,
                "bundle_state": "processing",
            }
            for e in batch.esims
        ]
        async with self.sessions() as session, session.begin():
            if rows:
                await session.execute(
                    insert(Esim).values(rows).on_conflict_do_nothing(index_elements=["iccid"])
                )
            holders = await session.execute(
                select(Esim.iccid, Esim.order_id).where(Esim.iccid.in_([e.iccid for e in batch.esims]))
            )
            clashes = sorted(iccid for iccid, owner in holders if owner != batch.order_id)
            if clashes:
                # ICCIDs are personal data: the log names the order (the failure, encoded, names them).
                log.error(
                    "order %s: %d ICCID(s) already belong to other orders", batch.order_id, len(clashes)
                )
                raise ApplicationError(
                    f"eSIM Go issued ICCID(s) {', '.join(clashes)} that already belong to other orders",
                    type=ICCID_CONFLICT,
                    non_retryable=True,
                )
            stored = await session.scalar(
                select(func.count()).select_from(Esim).where(Esim.order_id == batch.order_id)
            )
            if batch.quantity and stored != batch.quantity:  # raised inside: nothing is stored
                raise ApplicationError(
                    f"the supplier delivered {stored} eSIM(s) for an order of {batch.quantity}",
                    type=INCOMPLETE_DELIVERY,
                    non_retryable=True,
                )

    async def _attach_topup(self, order: Order) -> None:
        """The top-up's bundle, on the eSIM's list of bundles once (the usage callbacks and supplier reads
        fill in its reference, state and data)."""
        async with self.sessions() as session, session.begin():
            esim_id = await session.scalar(select(Esim.id).where(Esim.iccid == order.target_iccid))
            if esim_id is None:  # refused by the API before the start; a row since removed is a bug
                raise ApplicationError(
                    f"no eSIM {order.target_iccid} on record", type="BAD_DATA", non_retryable=True
                )
            await session.execute(
                insert(EsimBundle)
                .values(esim_id=esim_id, order_id=order.id, name=order.bundle_code, state="processing")
                .on_conflict_do_nothing(
                    index_elements=["esim_id", "order_id"], index_where=text("order_id IS NOT NULL")
                )
            )


def _check_topup_delivery(order: Order, batch: StoreEsims) -> None:
    """The supplier answers a top-up with the eSIM it applied the bundle to: any other is not ours to give."""
    delivered = sorted({e.iccid for e in batch.esims})
    if delivered != [order.target_iccid]:
        log.error("top-up %s: the supplier delivered %d eSIM(s), not its own", order.id, len(delivered))
        raise ApplicationError(
            f"eSIM Go applied the top-up to {', '.join(delivered) or 'no eSIM'}, not to {order.target_iccid}",
            type=ICCID_CONFLICT,
            non_retryable=True,
        )
