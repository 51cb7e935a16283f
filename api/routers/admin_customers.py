"""Admin: customer accounts — listing, deactivation (a soft delete; orders and payments stay) and
reactivation (logins work again; sessions ended at deactivation stay ended, see ttelgo.deactivation)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import func, select

from api.deps import Admin, Session, request_id
from api.pagination import Page, Paging
from api.schemas.customers import CustomerOut
from api.schemas.vendors import Reason
from ttelgo.deactivation import any_customer, deactivate_account, live_customer, reactivate_account
from ttelgo.models import User, UserRole

router = APIRouter(prefix="/api/v1/admin/customers", tags=["admin: customers"])


@router.get("", response_model=Page[CustomerOut], summary="List customers, newest first")
async def list_customers(
    _: Admin,
    session: Session,
    paging: Paging,
    deactivated: Annotated[bool, Query(description="list the deactivated customers instead")] = False,
    email: Annotated[str | None, Query(max_length=320, description="exact e-mail, any case")] = None,
) -> Page[CustomerOut]:
    query = (
        select(User)
        .where(User.role == UserRole.CUSTOMER)
        .where(User.deleted_at.is_not(None) if deactivated else User.deleted_at.is_(None))
        .order_by(User.created_at.desc(), User.id)
    )
    if email:
        query = query.where(func.lower(User.email) == email.lower())
    return await paging.fetch_page(session, query, CustomerOut)


@router.post(
    "/{user_id}/deactivate",
    status_code=204,
    response_class=Response,
    summary="Deactivate a customer: logins refused, sessions ended at once, orders and history kept",
)
async def deactivate(
    request: Request, user_id: uuid.UUID, admin: Admin, session: Session, body: Reason | None = None
) -> Response:
    async with session.begin():
        user = await live_customer(session, user_id)
        await deactivate_account(
            session, user, actor=admin.actor, reason=body and body.reason, request_id=request_id(request)
        )
    return Response(status_code=204)


@router.post(
    "/{user_id}/reactivate",
    response_model=CustomerOut,
    summary="Reactivate a deactivated customer: logins work again, old sessions stay ended "
    "(409 NOT_DEACTIVATED for a live one, EMAIL_ALREADY_REGISTERED if the e-mail was taken meanwhile)",
)
async def reactivate(
    request: Request, user_id: uuid.UUID, admin: Admin, session: Session, body: Reason | None = None
) -> CustomerOut:
    async with session.begin():
        user = await any_customer(session, user_id)
        await reactivate_account(
            session, user, actor=admin.actor, reason=body and body.reason, request_id=request_id(request)
        )
    return CustomerOut.model_validate(user)
