"""Vendor API: the eSIMs the vendor sold, filtered, with install details and every bundle's usage."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request

from api.deps import AnyVendor, Session
from api.esim_views import (
    BundleState,
    Iccid,
    ProfileState,
    esim_detail,
    esim_page,
    esims_query,
    filtered,
)
from api.pagination import Page, Paging
from api.schemas.esims import EsimView
from api.schemas.fields import CustomerReference
from ttelgo.models import Order

router = APIRouter(prefix="/api/v1/vendor/esims", tags=["vendor: eSIMs"])


def _base_path(order: Order) -> str:
    return f"/api/v1/vendor/orders/{order.id}"


@router.get("", response_model=Page[EsimView], summary="My eSIMs, newest first, filtered (as last read)")
async def list_esims(
    request: Request,
    caller: AnyVendor,
    session: Session,
    paging: Paging,
    order_id: Annotated[uuid.UUID | None, Query(description="the order, or top-up, that bought it")] = None,
    customer_reference: Annotated[CustomerReference | None, Query(description="exact")] = None,
    profile_status: ProfileState | None = None,
    bundle_state: Annotated[BundleState | None, Query(description="any bundle on it in this state")] = None,
) -> Page[EsimView]:
    query = filtered(
        esims_query().where(Order.vendor_id == caller.vendor_id),
        order_id=order_id,
        customer_reference=customer_reference,
        profile_status=profile_status,
        bundle_state=bundle_state,
    )
    return await esim_page(request, session, paging, query, _base_path)


@router.get(
    "/{iccid}",
    response_model=EsimView,
    summary="One of my eSIMs, read again from eSIM Go when the stored copy is older than a minute",
    responses={404: {"description": "ESIM_NOT_FOUND: no such eSIM among mine"}},
)
async def get_esim(request: Request, iccid: Iccid, caller: AnyVendor, session: Session) -> EsimView:
    query = esims_query().where(Order.vendor_id == caller.vendor_id)
    return await esim_detail(request, session, query, iccid, _base_path)
