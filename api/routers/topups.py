"""Customer API: top up an eSIM I bought: the bundles that fit it, and buying one by card."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from api.deps import Session, require_user
from api.esim_topups import Iccid, bundle_page, fitting_bundles, owned_esim, topup_bundle
from api.idempotency import idempotent
from api.pagination import Page, Paging
from api.placing import customer_scope, place_card_order
from api.schemas.catalogue import BundleSummary
from api.schemas.payments import CustomerOrderCreated
from api.schemas.topups import CustomerTopupCreate
from ttelgo.models import User

router = APIRouter(prefix="/api/v1/esims", tags=["customer: top-ups"])
Customer = Annotated[User, Depends(require_user)]


@router.get(
    "/{iccid}/topups/bundles",
    response_model=Page[BundleSummary],
    summary="Bundles on sale that fit my eSIM (its coverage), at retail prices, cheapest first",
)
async def topup_bundles(
    request: Request, iccid: Iccid, user: Customer, session: Session, paging: Paging
) -> Page[BundleSummary]:
    esim = await owned_esim(session, iccid, user_id=user.id)
    snapshot = await request.app.state.catalogue_cache.get()
    return bundle_page(await fitting_bundles(session, snapshot, esim), paging, lambda b: b.price_minor)


@router.post(
    "/{iccid}/topups",
    status_code=201,
    response_model=CustomerOrderCreated,
    summary="Top my eSIM up with one more bundle, paid by card like an order (Idempotency-Key required)",
    responses={
        409: {"description": "ESIM_NOT_TOPUPABLE: the eSIM's profile can take no more bundles"},
        422: {"description": "BUNDLE_UNKNOWN, or TOPUP_BUNDLE_INCOMPATIBLE: it does not fit this eSIM"},
    },
)
async def create_topup(request: Request, iccid: Iccid, body: CustomerTopupCreate, user: Customer) -> Response:
    async def handle() -> Response:
        snapshot = await request.app.state.catalogue_cache.get()
        async with request.app.state.sessions() as session:
            esim = await owned_esim(session, iccid, user_id=user.id)
            bundle = await topup_bundle(session, snapshot, esim, body.bundle_code)
        return await place_card_order(request, user, bundle, 1, target_iccid=esim.iccid)

    return await idempotent(request, customer_scope(user), handle)
