"""Admin API: find any eSIM by ICCID, order, vendor, customer e-mail, customer or supplier reference."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from sqlalchemy import exists, func, or_, select
from sqlalchemy.orm import aliased

from api.deps import Admin, Session
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
from api.schemas.esims import AdminEsimView
from api.schemas.fields import CustomerReference, line
from ttelgo.models import Esim, EsimBundle, Order, User

router = APIRouter(prefix="/api/v1/admin/esims", tags=["admin: eSIMs"])
SupplierReference = Annotated[str, line(100, min_length=1)]


def _base_path(order: Order) -> str:
    return f"/api/v1/admin/orders/{order.id}"


def _extra(_esim: Esim, order: Order) -> dict[str, Any]:
    return {
        "vendor_id": order.vendor_id,
        "user_id": order.user_id,
        "supplier_order_reference": order.supplier_order_reference,
    }


@router.get("", response_model=Page[AdminEsimView], summary="Search all eSIMs, newest first")
async def list_esims(
    request: Request,
    admin: Admin,
    session: Session,
    paging: Paging,
    iccid: Annotated[
        str | None, Query(pattern=r"^[0-9]{1,22}$", description="exact, or its leading digits")
    ] = None,
    order_id: Annotated[uuid.UUID | None, Query(description="the order, or top-up, that bought it")] = None,
    vendor_id: uuid.UUID | None = None,
    customer_email: Annotated[str | None, Query(max_length=320, description="exact, any case")] = None,
    customer_reference: Annotated[CustomerReference | None, Query(description="exact")] = None,
    supplier_reference: Annotated[
        SupplierReference | None, Query(description="eSIM Go order reference of its order or a top-up")
    ] = None,
    profile_status: ProfileState | None = None,
    bundle_state: BundleState | None = None,
) -> Page[AdminEsimView]:
    query = filtered(
        esims_query(),
        order_id=order_id,
        customer_reference=customer_reference,
        profile_status=profile_status,
        bundle_state=bundle_state,
    )
    if iccid:
        query = query.where(Esim.iccid.startswith(iccid, autoescape=True))
    if vendor_id:
        query = query.where(Order.vendor_id == vendor_id)
    if customer_email:
        users = select(User.id).where(func.lower(User.email) == customer_email.strip().lower())
        query = query.where(Order.user_id.in_(users))
    if supplier_reference:
        topup = aliased(Order)
        topped_up = exists().where(
            EsimBundle.esim_id == Esim.id,
            EsimBundle.order_id == topup.id,
            topup.supplier_order_reference == supplier_reference,
        )
        query = query.where(or_(Order.supplier_order_reference == supplier_reference, topped_up))
    return await esim_page(request, session, paging, query, _base_path, AdminEsimView, _extra)


@router.get(
    "/{iccid}",
    response_model=AdminEsimView,
    summary="One eSIM, read again from eSIM Go when the stored copy is older than a minute",
    responses={404: {"description": "ESIM_NOT_FOUND"}},
)
async def get_esim(request: Request, iccid: Iccid, admin: Admin, session: Session) -> AdminEsimView:
    return await esim_detail(request, session, esims_query(), iccid, _base_path, AdminEsimView, _extra)
