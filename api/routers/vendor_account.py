"""Vendor self-service: wallet and statement (API key or team member); API keys (team members only: a
key must not be able to mint more keys); the owner deactivating a team member. The webhook endpoints are
in `vendor_webhooks`."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy import select

from api.deps import AnyVendor, Session, VendorCaller, request_id, require_vendor_member
from api.pagination import Paging
from api.schemas.statements import StatementOut
from api.schemas.vendors import ApiKeyCreate, ApiKeyCreated, ApiKeyOut, Reason, WalletOut
from api.statements import CSV_RESPONSE, StatementPeriod, read_statement
from ttelgo import ledger, vendors
from ttelgo.deactivation import deactivate_account, live_member
from ttelgo.errors import AppError
from ttelgo.models import ApiKey, VendorUserRole

router = APIRouter(prefix="/api/v1/vendor", tags=["vendor: account"])
Member = Annotated[VendorCaller, Depends(require_vendor_member)]


def _manager(member: VendorCaller) -> VendorCaller:
    if member.role is VendorUserRole.VIEWER:
        raise AppError("FORBIDDEN", "viewers cannot manage keys or webhooks")
    return member


@router.get("/wallet", response_model=WalletOut, summary="Balance, available, held, credit limit")
async def wallet(caller: AnyVendor, session: Session) -> WalletOut:
    vendor = await vendors.get_vendor(session, caller.vendor_id)
    balance = await ledger.wallet_balance(
        session, await ledger.vendor_wallet(session, vendor.id, vendor.currency)
    )
    await session.commit()
    return WalletOut(**balance.__dict__)


@router.get(
    "/ledger",
    response_model=StatementOut,
    summary="My wallet statement for a period: balances, totals by type, entries (or all of them as CSV)",
    responses=CSV_RESPONSE,
)
async def statement(
    request: Request, caller: AnyVendor, period: StatementPeriod, paging: Paging
) -> StatementOut | StreamingResponse:
    return await read_statement(request, caller.vendor_id, period, paging)


@router.get("/api-keys", response_model=list[ApiKeyOut], summary="My API keys (prefixes only)")
async def list_keys(member: Member, session: Session) -> list[ApiKeyOut]:
    keys = await session.scalars(
        select(ApiKey).where(ApiKey.vendor_id == member.vendor_id).order_by(ApiKey.created_at)
    )
    return [ApiKeyOut.model_validate(k) for k in keys]


@router.post("/api-keys", status_code=201, response_model=ApiKeyCreated, summary="Create a key; shown once")
async def create_key(request: Request, body: ApiKeyCreate, member: Member, session: Session) -> ApiKeyCreated:
    _manager(member)
    async with session.begin():
        vendor = await vendors.get_vendor(session, member.vendor_id)
        key, plaintext = await vendors.issue_api_key(
            session,
            vendor,
            name=body.name,
            actor=member.actor,
            request_id=request_id(request),
            created_by_vendor_user_id=member.vendor_user_id,
        )
    return ApiKeyCreated(**ApiKeyOut.model_validate(key).model_dump(), key=plaintext)


@router.delete("/api-keys/{key_id}", status_code=204, summary="Revoke one of my keys")
async def revoke_key(request: Request, key_id: uuid.UUID, member: Member, session: Session) -> Response:
    _manager(member)
    async with session.begin():
        await vendors.revoke_api_key(
            session,
            member.vendor_id,
            key_id,
            actor=member.actor,
            request_id=request_id(request),
        )
    return Response(status_code=204)


@router.post(
    "/users/{member_id}/deactivate",
    status_code=204,
    response_class=Response,
    summary="Owner only: deactivate a team member (logins refused, sessions ended, history kept)",
)
async def deactivate_member(
    request: Request, member_id: uuid.UUID, member: Member, session: Session, body: Reason | None = None
) -> Response:
    if member.role is not VendorUserRole.OWNER:
        raise AppError("FORBIDDEN", "only the vendor's owner can deactivate team members")
    if member_id == member.vendor_user_id:
        raise AppError("CONFLICT", "an owner cannot deactivate themselves; ask TTelGo")
    async with session.begin():
        target = await live_member(session, member.vendor_id, member_id)
        await deactivate_account(
            session, target, actor=member.actor, reason=body and body.reason, request_id=request_id(request)
        )
    return Response(status_code=204)
