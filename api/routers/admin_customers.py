"""Admin: customer accounts — deactivation (a soft delete; orders and payments stay)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response

from api.deps import Admin, Session, request_id
from api.schemas.vendors import Reason
from ttelgo.deactivation import deactivate_account, live_customer

router = APIRouter(prefix="/api/v1/admin/customers", tags=["admin: customers"])


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
