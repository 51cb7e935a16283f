"""What the customer, vendor and admin eSIM routers share: the query each narrows to its own eSIMs, the view
of an eSIM with every bundle on it, and the read from eSIM Go when the stored copy has grown old.

Lists answer from the database. A detail read whose copy was read from eSIM Go more than
ESIM_FRESHNESS_SECONDS ago starts `esim-refresh-{eSIM row id}` (or attaches to the one running, so a burst of
reads costs the supplier one read, on the rate-limited supplier queue), waits for it at most
ESIM_REFRESH_WAIT_SECONDS, and answers from the database either way: with the supplier down the stored
copy answers, marked stale with its age.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Path, Request
from sqlalchemy import Select, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import WorkflowFailureError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError

from activities.contracts import RefreshEsim
from api.order_views import esim_out
from api.pagination import Page, PageParams
from api.schemas.esims import BundleUsageOut, EsimView
from ttelgo.errors import AppError
from ttelgo.esim_bundles import BYTES_PER_MB, used_percent
from ttelgo.models import Esim, EsimBundle, Order
from workflows.esim_refresh import EsimRefreshWorkflow, refresh_workflow_id

log = logging.getLogger(__name__)
View = TypeVar("View", bound=EsimView)
BasePath = Callable[[Order], str]  # the order URL under which the eSIM's QR code lives, per audience

ProfileState = Literal["released", "downloaded", "installed", "enabled", "disabled", "deleted"]
BundleState = Literal["processing", "queued", "active", "depleted", "expired", "revoked", "lapsed"]
Iccid = Annotated[str, Path(pattern=r"^[0-9]{18,22}$", description="the eSIM's ICCID (18–22 digits)")]


def esims_query() -> Select[Any]:
    """Every eSIM with the order that sold it; routers narrow it to the caller's own."""
    return select(Esim, Order).join(Order, Order.id == Esim.order_id).where(Order.deleted_at.is_(None))


def filtered(
    query: Select[Any],
    *,
    order_id: uuid.UUID | None = None,
    customer_reference: str | None = None,
    profile_status: str | None = None,
    bundle_state: str | None = None,
) -> Select[Any]:
    """The list filters vendors and admins share; each one given narrows `esims_query()`."""
    if order_id:  # the eSIM the order sold, or the eSIM a top-up order put its bundle on
        query = query.where(
            or_(
                Esim.order_id == order_id,
                exists().where(EsimBundle.esim_id == Esim.id, EsimBundle.order_id == order_id),
            )
        )
    if customer_reference is not None:
        query = query.where(Order.customer_reference == customer_reference)
    if profile_status:
        query = query.where(Esim.profile_status == profile_status)
    if bundle_state:  # any bundle on it in this state
        query = query.where(
            or_(
                Esim.bundle_state == bundle_state,
                exists().where(EsimBundle.esim_id == Esim.id, EsimBundle.state == bundle_state),
            )
        )
    return query


def _bundle_out(bundle: EsimBundle) -> BundleUsageOut:
    total, left = bundle.data_total_bytes, bundle.data_remaining_bytes
    used = None if total is None or left is None else max(total - left, 0)
    percent = used_percent(bundle)
    return BundleUsageOut(
        name=bundle.name,
        reference=bundle.reference,
        order_id=bundle.order_id,
        state=bundle.state,
        unlimited=bundle.unlimited,
        data_total_mb=None if total is None else total // BYTES_PER_MB,
        data_used_mb=None if used is None else used // BYTES_PER_MB,
        data_remaining_mb=None if left is None else left // BYTES_PER_MB,
        data_used_percent=percent,
        data_remaining_percent=None if percent is None else round(100 - percent, 1),
        assigned_at=bundle.assigned_at,
        started_at=bundle.started_at,
        expires_at=bundle.expires_at,
    )


def _sold_bundle(esim: Esim) -> EsimBundle:
    """The bundle sold with the eSIM as its own columns describe it, until a report gives it a row."""
    return EsimBundle(
        name=esim.bundle_name,
        order_id=esim.order_id,
        state=esim.bundle_state,
        data_total_bytes=esim.data_total_bytes,
        data_remaining_bytes=esim.data_remaining_bytes,
        unlimited=esim.unlimited,
        started_at=esim.first_used_at,
        expires_at=esim.expires_at,
    )


def _age_s(esim: Esim, now: datetime) -> int | None:
    return None if esim.refreshed_at is None else int((now - esim.refreshed_at).total_seconds())


def _view(
    schema: type[View],
    esim: Esim,
    order: Order,
    bundles: Sequence[EsimBundle],
    base_path: BasePath,
    freshness_s: int,
    extra: dict[str, Any],
) -> View:
    shown = list(bundles)
    if not any(b.order_id == esim.order_id for b in shown):
        shown.insert(0, _sold_bundle(esim))
    shown.sort(key=lambda b: (b.order_id != esim.order_id, b.created_at or datetime.min.replace(tzinfo=UTC)))
    age = _age_s(esim, datetime.now(UTC))
    # Internal ids only in the views that declare them (the admin's).
    internal = {"esim_id": esim.id} if "esim_id" in schema.model_fields else {}
    return schema(
        iccid=esim.iccid,
        order_id=order.id,
        channel=order.channel,
        customer_reference=order.customer_reference,
        status=esim.status,
        profile_status=esim.profile_status,
        install=esim_out(esim, base_path(order)),
        first_used_at=esim.first_used_at,
        bundles=[_bundle_out(b) for b in shown],
        refreshed_at=esim.refreshed_at,
        refreshed_age_s=age,
        stale=age is None or age > freshness_s,
        created_at=esim.created_at,
        **internal,
        **extra,
    )


async def _bundles(session: AsyncSession, esim_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[EsimBundle]]:
    found: dict[uuid.UUID, list[EsimBundle]] = {i: [] for i in esim_ids}
    if esim_ids:
        rows = await session.scalars(
            select(EsimBundle)
            .where(EsimBundle.esim_id.in_(esim_ids))
            .execution_options(populate_existing=True)
        )
        for bundle in rows:
            found[bundle.esim_id].append(bundle)
    return found


async def esim_page(
    request: Request,
    session: AsyncSession,
    paging: PageParams,
    query: Select[Any],
    base_path: BasePath,
    schema: type[View] = EsimView,  # type: ignore[assignment]
    extra: Callable[[Esim, Order], dict[str, Any]] = lambda _e, _o: {},
) -> Page[View]:
    """One page of `query` (newest eSIMs first), each with its bundles, from the database."""
    total = await session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    rows = (
        await session.execute(
            query.order_by(Esim.created_at.desc(), Esim.id)
            .limit(paging.page_size)
            .offset((paging.page - 1) * paging.page_size)
        )
    ).all()
    bundles = await _bundles(session, [esim.id for esim, _ in rows])
    freshness = request.app.state.settings.esim_freshness_seconds
    items = [
        _view(schema, esim, order, bundles[esim.id], base_path, freshness, extra(esim, order))
        for esim, order in rows
    ]
    return Page[schema](items=items, page=paging.page, page_size=paging.page_size, total=int(total or 0))  # type: ignore[valid-type]


async def esim_detail(
    request: Request,
    session: AsyncSession,
    query: Select[Any],
    iccid: str,
    base_path: BasePath,
    schema: type[View] = EsimView,  # type: ignore[assignment]
    extra: Callable[[Esim, Order], dict[str, Any]] = lambda _e, _o: {},
) -> View:
    """The caller's eSIM `iccid` (`query` holds the caller's rule), read again from eSIM Go first when
    its copy is older than ESIM_FRESHNESS_SECONDS. Another tenant's eSIM looks exactly like a missing one."""
    query = query.where(Esim.iccid == iccid).execution_options(populate_existing=True)
    found = (await session.execute(query)).one_or_none()
    if found is None:
        raise AppError("ESIM_NOT_FOUND", f"no eSIM {iccid}")
    settings = request.app.state.settings
    age = _age_s(found[0], datetime.now(UTC))
    if age is None or age > settings.esim_freshness_seconds:
        esim_id = found[0].id
        await session.commit()  # no connection held while the supplier is read
        await refresh(request, esim_id, iccid)
        found = (await session.execute(query)).one()
    esim, order = found
    bundles = await _bundles(session, [esim.id])
    return _view(
        schema, esim, order, bundles[esim.id], base_path, settings.esim_freshness_seconds, extra(esim, order)
    )


async def refresh(request: Request, esim_id: uuid.UUID, iccid: str) -> None:
    """Reads the eSIM from eSIM Go through its refresh workflow, waiting a bounded time; failing quietly
    (the caller answers the stored copy, marked stale)."""
    settings = request.app.state.settings
    job = RefreshEsim(
        iccid=iccid,
        max_age_s=settings.esim_freshness_seconds,
        supplier_task_queue=settings.esimgo_task_queue,
    )
    try:
        async with asyncio.timeout(settings.esim_refresh_wait_seconds):
            handle = await request.app.state.temporal.start_workflow(
                EsimRefreshWorkflow.run,
                job,
                id=refresh_workflow_id(esim_id),
                task_queue=settings.temporal_task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                # A run no worker picks up (workers gone) must not hold every later read of the ICCID.
                execution_timeout=timedelta(seconds=job.budget_s + 30),
            )
            outcome = await handle.result()
        if not outcome.refreshed:
            log.debug("eSIM refresh: %s", outcome.detail)
    except (TimeoutError, RPCError, RuntimeError, WorkflowFailureError) as exc:  # RuntimeError: no Temporal
        log.warning("eSIM not read from eSIM Go, the stored copy answers: %s", type(exc).__name__)
