"""What the customer and vendor top-up routes share: the caller's eSIM, the bundles on sale that fit it,
and refusing (before anything starts) a top-up that cannot be sold. Each router keeps its own rule for whose
eSIMs a caller may see and its own prices."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Annotated

from fastapi import Path
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.pagination import Page, PageParams
from api.schemas.catalogue import BundleSummary
from ttelgo.catalogue.snapshot import CatalogueSnapshot, PricedBundle, money
from ttelgo.catalogue.topups import coverages, fitting
from ttelgo.errors import AppError
from ttelgo.models import Esim, EsimStatus, Order
from ttelgo.models.esims import EsimBundle

Iccid = Annotated[str, Path(pattern=r"^[0-9]{18,22}$", description="the eSIM's ICCID")]
# Profiles that can take no bundle any more: revoked by us, or deleted from the phone or unknown to eSIM Go
# as last read from it (`profile_status`, lower case).
GONE_PROFILES = frozenset({"deleted", "unknown"})


async def owned_esim(
    session: AsyncSession, iccid: str, *, user_id: uuid.UUID | None = None, vendor_id: uuid.UUID | None = None
) -> Esim:
    """The eSIM if the caller bought it (customers: `user_id`, vendors: `vendor_id`); anyone else's looks
    exactly like a missing one."""
    owner = Order.user_id == user_id if user_id else Order.vendor_id == vendor_id
    esim = await session.scalar(
        select(Esim)
        .join(Order, Order.id == Esim.order_id)
        .where(Esim.iccid == iccid, owner, Order.deleted_at.is_(None))
    )
    if esim is None:
        raise AppError("ESIM_NOT_FOUND", f"no eSIM {iccid}")
    return esim


async def fitting_bundles(
    session: AsyncSession, snapshot: CatalogueSnapshot, esim: Esim
) -> list[PricedBundle]:
    """Bundles on sale with the coverage of one already on the eSIM (the one it was sold with, or a top-up)."""
    names = set(await session.scalars(select(EsimBundle.name).where(EsimBundle.esim_id == esim.id)))
    return fitting(snapshot, await coverages(session, names | {esim.bundle_name}))


async def topup_bundle(
    session: AsyncSession, snapshot: CatalogueSnapshot, esim: Esim, bundle_code: str
) -> PricedBundle:
    """The bundle to put on `esim`, or the 4xx that says why not."""
    profile = (esim.profile_status or "").lower()
    if esim.status is EsimStatus.REVOKED or profile in GONE_PROFILES:
        state = profile if profile in GONE_PROFILES else esim.status.value
        raise AppError("ESIM_NOT_TOPUPABLE", f"eSIM {esim.iccid} is {state}: it can take no more bundles")
    bundle = snapshot.by_code.get(bundle_code)
    if bundle is None:
        raise AppError("BUNDLE_UNKNOWN", f"no bundle named {bundle_code!r} is on sale")
    if bundle not in await fitting_bundles(session, snapshot, esim):
        raise AppError(
            "TOPUP_BUNDLE_INCOMPATIBLE",
            f"{bundle_code} does not cover what eSIM {esim.iccid} covers; "
            f"GET its topups/bundles for those that fit",
        )
    return bundle


def bundle_page(
    bundles: list[PricedBundle], paging: PageParams, price: Callable[[PricedBundle], int]
) -> Page[BundleSummary]:
    """Cheapest first at the caller's price, shaped like the catalogue's list items."""
    ranked = sorted(bundles, key=lambda b: (price(b), b.code))
    start = (paging.page - 1) * paging.page_size
    items = [
        BundleSummary.model_validate({**b.summary, "price": money(price(b), b.currency)})
        for b in ranked[start : start + paging.page_size]
    ]
    return Page[BundleSummary](items=items, page=paging.page, page_size=paging.page_size, total=len(ranked))
