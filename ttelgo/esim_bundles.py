"""Bundles on an eSIM as eSIM Go reports them (usage callbacks, reads of `/esims/{iccid}/bundles`) and the
usage alerts they cross. Callers hold the eSIM row locked (`lock_esim`), so concurrent reports about one
eSIM apply one after the other, and an alert is claimed in the same transaction as the usage that
crossed it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from ttelgo.models import Esim, EsimAlertKind, EsimBundle, EsimBundleAlert, Order, OrderKind, OrderStatus

BYTES_PER_MB = 1_000_000  # eSIM Go's MB, as its catalogue and the simulator count them
# Bundle states in which nothing more will be used or expire.
FINISHED_STATES = frozenset({"expired", "revoked", "lapsed"})


@dataclass(frozen=True)
class BundleReport:
    """One bundle assignment as the supplier describes it (callbacks leave some fields out)."""

    name: str
    reference: str | None
    initial_bytes: int | None = None
    remaining_bytes: int | None = None
    unlimited: bool = False
    state: str | None = None
    assigned_at: datetime | None = None
    started_at: datetime | None = None
    expires_at: datetime | None = None


def esims_of(order: Order) -> ColumnElement[bool]:
    """The eSIMs an order is about: the ones it bought, or the one a top-up puts its bundle on."""
    if order.kind is OrderKind.TOPUP:
        return Esim.iccid == order.target_iccid
    return Esim.order_id == order.id


async def lock_esim(session: AsyncSession, iccid: str) -> Esim | None:
    return await session.scalar(select(Esim).where(Esim.iccid == iccid).with_for_update())


async def ensure_sold_bundles(session: AsyncSession, esim: Esim) -> None:
    """Rows for the bundles our orders put on this eSIM (the one sold with it, completed top-ups), before
    eSIM Go has named their assignments; a report naming an assignment first claims the one of its time."""
    topups = await session.execute(
        select(Order.id, Order.bundle_code).where(
            Order.target_iccid == esim.iccid, Order.status == OrderStatus.COMPLETED
        )
    )
    rows: list[dict[str, Any]] = [
        {
            "id": uuid.uuid4(),
            "esim_id": esim.id,
            "order_id": esim.order_id,
            "name": esim.bundle_name,
            "state": esim.bundle_state,
            "data_total_bytes": esim.data_total_bytes,
            "data_remaining_bytes": esim.data_remaining_bytes,
            "unlimited": esim.unlimited,
            "started_at": esim.first_used_at,
            "expires_at": esim.expires_at,
        }
    ]
    # One multi-row INSERT: every row names the same columns.
    rows += [
        {**dict.fromkeys(rows[0]), "id": uuid.uuid4(), "esim_id": esim.id, "order_id": order_id, "name": name}
        | {"state": "processing", "unlimited": False}
        for order_id, name in topups
    ]
    await session.execute(
        insert(EsimBundle)
        .values(rows)
        .on_conflict_do_nothing(
            index_elements=["esim_id", "order_id"], index_where=text("order_id IS NOT NULL")
        )
    )


async def _find(session: AsyncSession, esim: Esim, report: BundleReport) -> EsimBundle:
    named = select(EsimBundle).where(EsimBundle.esim_id == esim.id, EsimBundle.name == report.name)
    if report.reference:
        found = await session.scalar(named.where(EsimBundle.reference == report.reference))
        found = found or await _placeholder(session, named, report)
    else:
        # A callback may name no assignment: it is about the bundle of that name in use (the live one
        # assigned last), never a new one beside it.
        found = await session.scalar(
            named.outerjoin(Order, Order.id == EsimBundle.order_id)
            .order_by(
                func.coalesce(EsimBundle.state.in_(FINISHED_STATES), False),
                EsimBundle.assigned_at.desc().nulls_last(),
                Order.created_at.desc().nulls_last(),
                EsimBundle.created_at.desc(),
            )
            .limit(1)
        )
    if found is not None:
        return found
    bundle = EsimBundle(id=uuid.uuid4(), esim_id=esim.id, name=report.name, unlimited=False)
    session.add(bundle)
    return bundle


async def _placeholder(
    session: AsyncSession, named: Select[tuple[EsimBundle]], report: BundleReport
) -> EsimBundle | None:
    """The row an order of ours made for the assignment this report first names: the order placed last
    before that assignment (a top-up of the same name is always placed after the bundle sold with the
    eSIM). Without an assignment time, the oldest order's."""
    unclaimed = named.outerjoin(Order, Order.id == EsimBundle.order_id).where(EsimBundle.reference.is_(None))
    if report.assigned_at is not None:
        found = await session.scalar(
            unclaimed.where(Order.created_at <= report.assigned_at)
            .order_by(Order.created_at.desc(), EsimBundle.id)
            .limit(1)
        )
        if found is not None:
            return found
    return await session.scalar(
        unclaimed.order_by(Order.created_at.asc().nulls_last(), EsimBundle.created_at, EsimBundle.id).limit(1)
    )


async def apply_report(session: AsyncSession, esim: Esim, report: BundleReport) -> EsimBundle:
    """Stores what the report says about its bundle. Reports come late and out of order: the data left on
    one assignment only ever goes down, and fields a report leaves out keep their value."""
    bundle = await _find(session, esim, report)
    bundle.reference = bundle.reference or report.reference
    if report.remaining_bytes is not None:
        current = bundle.data_remaining_bytes
        bundle.data_remaining_bytes = (
            report.remaining_bytes if current is None else min(current, report.remaining_bytes)
        )
    bundle.data_total_bytes = report.initial_bytes or bundle.data_total_bytes
    bundle.unlimited = report.unlimited
    if report.state:
        bundle.state = report.state.lower()
    elif bundle.data_remaining_bytes == 0 and not bundle.unlimited:
        bundle.state = "depleted"
    elif report.remaining_bytes is not None and bundle.state in (None, "processing", "queued"):
        bundle.state = "active"
    bundle.assigned_at = bundle.assigned_at or report.assigned_at
    bundle.started_at = bundle.started_at or report.started_at
    bundle.expires_at = report.expires_at or bundle.expires_at
    await session.flush()
    if bundle.order_id == esim.order_id:  # the sold bundle keeps the eSIM's own columns current too
        esim.bundle_state = bundle.state
        esim.data_total_bytes = bundle.data_total_bytes
        esim.data_remaining_bytes = bundle.data_remaining_bytes
        esim.unlimited = bundle.unlimited
        esim.expires_at = bundle.expires_at
    return bundle


def used_percent(bundle: EsimBundle) -> float | None:
    total, left = bundle.data_total_bytes, bundle.data_remaining_bytes
    if bundle.unlimited or not total or left is None:
        return None
    return round((total - left) * 100 / total, 1)


def crossed(bundle: EsimBundle) -> list[EsimAlertKind]:
    """The data thresholds this bundle has reached (exact integer arithmetic, no rounding). A finished
    bundle (expired, revoked, lapsed) announces nothing: news of it would come late."""
    total, left = bundle.data_total_bytes, bundle.data_remaining_bytes
    if bundle.unlimited or not total or left is None or bundle.state in FINISHED_STATES:
        return []
    used = total - left
    kinds = [EsimAlertKind.USAGE_80] if used * 100 >= 80 * total else []
    return kinds + ([EsimAlertKind.USAGE_100] if left <= 0 else [])


async def claim_alerts(
    session: AsyncSession, bundle_id: uuid.UUID, kinds: list[EsimAlertKind], emitted_by: str
) -> list[EsimBundleAlert]:
    """The alerts of `kinds` this emitter owns: the ones it inserts now, or inserted on an earlier attempt.
    Whoever inserts an alert first owns it; everyone else gets nothing for it."""
    if not kinds:
        return []
    await session.execute(
        insert(EsimBundleAlert)
        .values(
            [{"id": uuid.uuid4(), "bundle_id": bundle_id, "kind": k, "emitted_by": emitted_by} for k in kinds]
        )
        .on_conflict_do_nothing(index_elements=["bundle_id", "kind"])
    )
    owned = await session.scalars(
        select(EsimBundleAlert)
        .where(
            EsimBundleAlert.bundle_id == bundle_id,
            EsimBundleAlert.kind.in_(kinds),
            EsimBundleAlert.emitted_by == emitted_by,
        )
        .order_by(EsimBundleAlert.kind)
    )
    return list(owned)


async def unsent_alerts(
    session: AsyncSession, claimed_before: datetime, limit: int
) -> list[tuple[EsimBundleAlert, Order]]:
    """Alerts claimed before `claimed_before` whose send never completed, oldest first, each with the order
    that sold the eSIM (its buyer is told). Rows another sweep is sending right now are skipped."""
    found = await session.execute(
        select(EsimBundleAlert, Order)
        .join(EsimBundle, EsimBundle.id == EsimBundleAlert.bundle_id)
        .join(Esim, Esim.id == EsimBundle.esim_id)
        .join(Order, Order.id == Esim.order_id)
        .where(EsimBundleAlert.sent_at.is_(None), EsimBundleAlert.created_at < claimed_before)
        .order_by(EsimBundleAlert.created_at, EsimBundleAlert.id)
        .limit(limit)
        .with_for_update(of=EsimBundleAlert, skip_locked=True)
    )
    return [(alert, order) for alert, order in found.tuples()]


async def mark_sent(session: AsyncSession, alert_id: uuid.UUID) -> None:
    await session.execute(
        update(EsimBundleAlert)
        .where(EsimBundleAlert.id == alert_id, EsimBundleAlert.sent_at.is_(None))
        .values(sent_at=func.now())
    )


async def alert_details(session: AsyncSession, alert_id: uuid.UUID) -> tuple[Order, dict[str, Any]] | None:
    """The order that sold the eSIM, and what an alert's e-mail or webhook says (None: no such alert)."""
    found = (
        await session.execute(
            select(EsimBundleAlert, EsimBundle, Esim, Order)
            .join(EsimBundle, EsimBundle.id == EsimBundleAlert.bundle_id)
            .join(Esim, Esim.id == EsimBundle.esim_id)
            .join(Order, Order.id == Esim.order_id)
            .where(EsimBundleAlert.id == alert_id)
        )
    ).one_or_none()
    if found is None:
        return None
    alert, bundle, esim, order = found
    total, left = bundle.data_total_bytes, bundle.data_remaining_bytes
    details = {
        "alert_id": str(alert.id),
        "kind": alert.kind.value,
        "threshold_percent": {EsimAlertKind.USAGE_80: 80, EsimAlertKind.USAGE_100: 100}.get(alert.kind),
        "iccid": esim.iccid,
        "order_id": str(order.id),
        "customer_reference": order.customer_reference,
        "bundle_name": bundle.name,
        "data_total_mb": None if total is None else total // BYTES_PER_MB,
        "data_remaining_mb": None if left is None else left // BYTES_PER_MB,
        "data_used_percent": used_percent(bundle),
        "expires_at": bundle.expires_at.isoformat() if bundle.expires_at else None,
    }
    return order, details
