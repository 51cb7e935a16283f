"""A customer closing their own account: the same soft delete an admin's deactivation is (orders and
payments kept, every session ended, the e-mail free for a new account), audited."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from api.deps import Session, request_id, require_user
from ttelgo.deactivation import deactivate_account, live_customer
from ttelgo.errors import AppError
from ttelgo.models import User, UserRole

router = APIRouter(tags=["customer: account"])


@router.delete(
    "/api/v1/me",
    status_code=204,
    response_class=Response,
    summary="Close my customer account: logged out everywhere at once; orders and receipts are kept",
)
async def close_account(
    request: Request, user: Annotated[User, Depends(require_user)], session: Session
) -> Response:
    if user.role is not UserRole.CUSTOMER:
        raise AppError("FORBIDDEN", "staff accounts are closed by another admin")
    async with session.begin():
        me = await live_customer(session, user.id)
        await deactivate_account(
            session,
            me,
            actor=f"user:{user.id}",
            reason="closed by the customer",
            request_id=request_id(request),
        )
    return Response(status_code=204)
