"""Customer API: my eSIMs after the sale: install details, profile state, every bundle and its usage."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from api.deps import Session, require_user
from api.esim_views import Iccid, esim_detail, esim_page, esims_query
from api.pagination import Page, Paging
from api.schemas.esims import EsimView
from ttelgo.models import Order, User

router = APIRouter(prefix="/api/v1/esims", tags=["customer: eSIMs"])
Customer = Annotated[User, Depends(require_user)]


def _base_path(order: Order) -> str:
    return f"/api/v1/orders/{order.id}"


@router.get("", response_model=Page[EsimView], summary="My eSIMs, newest first (as last read)")
async def list_esims(request: Request, user: Customer, session: Session, paging: Paging) -> Page[EsimView]:
    query = esims_query().where(Order.user_id == user.id)
    return await esim_page(request, session, paging, query, _base_path)


@router.get(
    "/{iccid}",
    response_model=EsimView,
    summary="One of my eSIMs, read again from eSIM Go when the stored copy is older than a minute",
    responses={404: {"description": "ESIM_NOT_FOUND: no such eSIM among mine"}},
)
async def get_esim(request: Request, iccid: Iccid, user: Customer, session: Session) -> EsimView:
    return await esim_detail(
        request, session, esims_query().where(Order.user_id == user.id), iccid, _base_path
    )
