"""eSIM records after the sale: usage callbacks and supplier reads land here, and the usage alerts they cross
are claimed here, once per bundle and kind, in the same transaction as the usage itself."""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from activities.contracts import (
    APPLY_USAGE,
    CLAIM_EXPIRY_ALERT,
    EXPIRY_PLAN,
    REFRESH_ESIM,
    EsimAlert,
    ExpiryPlan,
    ExpiryWatch,
    RefreshEsim,
    RefreshOutcome,
    UsageEvent,
    UsageOutcome,
)
from activities.supplier_errors import as_application_error
from ttelgo.esim_bundles import (
    FINISHED_STATES,
    BundleReport,
    apply_report,
    claim_alerts,
    crossed,
    ensure_sold_bundles,
    lock_esim,
)
from ttelgo.esimgo import EsimGoClient, SupplierError
from ttelgo.models import (
    Esim,
    EsimAlertKind,
    EsimBundle,
    EsimBundleAlert,
    EsimStatus,
    Order,
    WebhookEvent,
    WebhookEventStatus,
)

PROVIDER = "esimgo"
EXPIRY_WORKFLOW = "EsimExpiry"
PROFILE_INSTALLED = frozenset({"installed", "enabled", "disabled"})  # the phone has (or had) the profile


def expiry_workflow_id(bundle_id: uuid.UUID) -> str:
    return f"esim-expiry-{bundle_id}"


def _emitter() -> str:
    """The workflow run an alert belongs to: it, and only it, sends the alert."""
    info = activity.info()
    return f"{info.workflow_id}/{info.workflow_run_id}"


class EsimActivities:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], esimgo: EsimGoClient | None = None
    ) -> None:
        self.sessions = sessions
        self.esimgo = esimgo

    @activity.defn(name=APPLY_USAGE)
    async def apply_usage(self, event: UsageEvent) -> UsageOutcome:
        cb = event.callback
        alerts: list[EsimAlert] = []
        watch: uuid.UUID | None = None
        async with self.sessions() as session, session.begin():
            esim = await lock_esim(session, cb.iccid)
            if esim is None:
                outcome = UsageOutcome(applied=False, detail=f"no eSIM with ICCID {cb.iccid} in our records")
            else:
                _first_use(esim, event)
                if cb.remaining_bytes is not None:
                    await ensure_sold_bundles(session, esim)
                    bundle = await apply_report(
                        session,
                        esim,
                        BundleReport(
                            name=cb.bundle_name or esim.bundle_name,
                            reference=cb.bundle_reference,
                            initial_bytes=cb.initial_bytes,
                            remaining_bytes=cb.remaining_bytes,
                            unlimited=cb.unlimited,
                            started_at=cb.start_time,
                            expires_at=cb.end_time,
                        ),
                    )
                    alerts = await _claimed(session, esim, bundle, crossed(bundle))
                    if bundle.expires_at and bundle.state not in FINISHED_STATES:
                        watch = bundle.id
                outcome = UsageOutcome(applied=True, detail=f"{cb.alert_type} applied", alerts=alerts)
            await session.execute(
                update(WebhookEvent)
                .where(WebhookEvent.provider == PROVIDER, WebhookEvent.event_id == event.event_id)
                .values(
                    status=WebhookEventStatus.DELIVERED if outcome.applied else WebhookEventStatus.IGNORED,
                    error=None if outcome.applied else outcome.detail,
                    processed_at=datetime.now(UTC),
                )
            )
        if watch is not None:
            await _watch_expiry(watch)
        return outcome

    @activity.defn(name=REFRESH_ESIM)
    async def refresh(self, request: RefreshEsim) -> RefreshOutcome:
        """Reads the eSIM and its bundles from eSIM Go, unless another read did so within `max_age_s`
        (a burst of reads that each found the copy stale costs the supplier one read)."""
        assert self.esimgo is not None, "the supplier worker builds this with an eSIM Go client"
        async with self.sessions() as session:
            esim = await session.scalar(select(Esim).where(Esim.iccid == request.iccid))
            if (
                esim is not None
                and esim.refreshed_at is not None
                and datetime.now(UTC) - esim.refreshed_at < timedelta(seconds=request.max_age_s)
            ):
                # Perhaps this run's own earlier attempt, whose answer was lost: the alerts it claimed are
                # this run's to send, and nobody else's.
                return RefreshOutcome(
                    refreshed=False,
                    detail="read from eSIM Go moments ago",
                    alerts=await _owned(session, esim),
                )
        try:
            profile = await self.esimgo.get_esim(request.iccid)
            usages = await self.esimgo.get_esim_bundles(request.iccid)
        except SupplierError as exc:
            raise as_application_error(exc) from exc
        async with self.sessions() as session, session.begin():
            esim = await lock_esim(session, request.iccid)
            if esim is None:
                return RefreshOutcome(refreshed=False, detail="no such eSIM in our records")
            await ensure_sold_bundles(session, esim)
            alerts: list[EsimAlert] = []
            for usage in usages:
                bundle = await apply_report(
                    session,
                    esim,
                    BundleReport(
                        name=usage.name,
                        reference=usage.reference,
                        initial_bytes=usage.initial_bytes,
                        remaining_bytes=usage.remaining_bytes,
                        unlimited=usage.unlimited,
                        state=usage.state or None,
                        assigned_at=usage.assigned_at,
                    ),
                )
                alerts += await _claimed(session, esim, bundle, crossed(bundle))
            if profile.profile_status:
                esim.profile_status = profile.profile_status.lower()
                if esim.status is EsimStatus.RELEASED and esim.profile_status in PROFILE_INSTALLED:
                    esim.status = EsimStatus.INSTALLED
            esim.refreshed_at = datetime.now(UTC)
        return RefreshOutcome(refreshed=True, detail=f"{len(usages)} bundle(s) read", alerts=alerts)

    @activity.defn(name=EXPIRY_PLAN)
    async def expiry_plan(self, watch: ExpiryWatch) -> ExpiryPlan:
        async with self.sessions() as session:
            bundle = await session.get(EsimBundle, watch.bundle_id)
        if bundle is None:
            return ExpiryPlan(expires_at=None, finished=True)
        return ExpiryPlan(expires_at=bundle.expires_at, finished=bundle.state in FINISHED_STATES)

    @activity.defn(name=CLAIM_EXPIRY_ALERT)
    async def claim_expiry_alert(self, watch: ExpiryWatch) -> list[EsimAlert]:
        async with self.sessions() as session, session.begin():
            bundle = await session.get(EsimBundle, watch.bundle_id)
            if bundle is None:
                return []
            esim = await session.get(Esim, bundle.esim_id)
            assert esim is not None
            return await _claimed(session, esim, bundle, [EsimAlertKind.EXPIRING])


def _first_use(esim: Esim, event: UsageEvent) -> None:
    cb = event.callback
    used = cb.remaining_bytes is not None and cb.remaining_bytes < (cb.initial_bytes or 0)
    if cb.alert_type == "FirstUse" or used:
        esim.first_used_at = esim.first_used_at or cb.start_time or datetime.now(UTC)
        if esim.status is EsimStatus.RELEASED:
            esim.status = EsimStatus.INSTALLED


async def _claimed(
    session: AsyncSession, esim: Esim, bundle: EsimBundle, kinds: list[EsimAlertKind]
) -> list[EsimAlert]:
    return await _as_alerts(session, esim, await claim_alerts(session, bundle.id, kinds, _emitter()))


async def _as_alerts(session: AsyncSession, esim: Esim, owned: list[EsimBundleAlert]) -> list[EsimAlert]:
    if not owned:
        return []
    channel = await session.scalar(select(Order.channel).where(Order.id == esim.order_id))
    assert channel is not None
    return [
        EsimAlert(alert_id=a.id, kind=a.kind.value, channel=channel, order_id=esim.order_id) for a in owned
    ]


async def _owned(session: AsyncSession, esim: Esim) -> list[EsimAlert]:
    """The alerts of this eSIM this run claimed already (on an attempt whose answer was lost)."""
    owned = await session.scalars(
        select(EsimBundleAlert)
        .join(EsimBundle, EsimBundle.id == EsimBundleAlert.bundle_id)
        .where(EsimBundle.esim_id == esim.id, EsimBundleAlert.emitted_by == _emitter())
        .order_by(EsimBundleAlert.created_at, EsimBundleAlert.kind)
    )
    return await _as_alerts(session, esim, list(owned))


async def _watch_expiry(bundle_id: uuid.UUID) -> None:
    """Starts the bundle's expiry watch (`esim-expiry-{bundle}`), unless it runs or has run already: it
    reads the expiry again whenever it wakes, so a later report needs no new run."""
    with contextlib.suppress(WorkflowAlreadyStartedError):
        await activity.client().start_workflow(
            EXPIRY_WORKFLOW,
            ExpiryWatch(bundle_id=bundle_id),
            id=expiry_workflow_id(bundle_id),
            task_queue=activity.info().task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
