"""Vendor API: top up an eSIM the vendor bought: the bundles that fit it, and buying one from the wallet.
(Topping up the wallet itself is api/routers/vendor_topups.py.)"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from api.deps import AnyVendor, Session, VendorCaller, vendor_role
from api.esim_topups import Iccid, bundle_page, fitting_bundles, owned_esim, topup_bundle
from api.idempotency import idempotent
from api.pagination import Page, Paging
from api.placing import place_wallet_order
from api.schemas.catalogue import BundleSummary
from api.schemas.orders import OrderDetail
from api.schemas.topups import VendorTopupCreate
from ttelgo import vendors
from ttelgo.models import VendorUserRole

router = APIRouter(prefix="/api/v1/vendor/esims", tags=["vendor: top-ups"])
Buyer = Annotated[VendorCaller, Depends(vendor_role(VendorUserRole.DEVELOPER))]


@router.get(
    "/{iccid}/topups/bundles",
    response_model=Page[BundleSummary],
    summary="Bundles on sale that fit our eSIM (its coverage), at our prices, cheapest first",
)
async def topup_bundles(
    request: Request, iccid: Iccid, caller: AnyVendor, session: Session, paging: Paging
) -> Page[BundleSummary]:
    esim = await owned_esim(session, iccid, vendor_id=caller.vendor_id)
    vendor = await vendors.get_vendor(session, caller.vendor_id)
    snapshot = await request.app.state.catalogue_cache.get()
    return bundle_page(
        await fitting_bundles(session, snapshot, esim),
        paging,
        lambda b: snapshot.vendor_price(b, vendor.markup_bps),
    )


@router.post(
    "/{iccid}/topups",
    status_code=201,
    response_model=OrderDetail,
    summary="Top our eSIM up with one more bundle from the wallet (Idempotency-Key required)",
    responses={
        202: {"model": OrderDetail, "description": "accepted, still provisioning: poll the Location"},
        402: {"description": "INSUFFICIENT_FUNDS, CREDIT_LIMIT_EXCEEDED or INVOICE_OVERDUE (nothing held)"},
        409: {"description": "ESIM_NOT_TOPUPABLE: the eSIM's profile can take no more bundles"},
        422: {"description": "BUNDLE_UNKNOWN, or TOPUP_BUNDLE_INCOMPATIBLE: it does not fit this eSIM"},
    },
)
async def create_topup(
    request: Request,
    iccid: Iccid,
    body: VendorTopupCreate,
    caller: Buyer,
    wait: Annotated[
        int, Query(ge=0, le=30, description="seconds to wait for the bundle before answering 202")
    ] = 0,
) -> Response:
    async def handle() -> Response:
        snapshot = await request.app.state.catalogue_cache.get()
        async with request.app.state.sessions() as session:
            esim = await owned_esim(session, iccid, vendor_id=caller.vendor_id)
            bundle = await topup_bundle(session, snapshot, esim, body.bundle_code)
        return await place_wallet_order(
            request,
            caller,
            snapshot,
            bundle,
            1,
            customer_reference=body.customer_reference,
            wait=wait,
            target_iccid=esim.iccid,
        )

    return await idempotent(request, caller.scope, handle)
