"""Admin: onboard and manage vendors — status, billing terms, markup, balance adjustments, API keys, team;
deactivation and reactivation (keys and sessions revoked at deactivation stay revoked: ttelgo.deactivation)."""

from __future__ import annotations

import hashlib
import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import select

from api.deps import Admin, Session, request_id
from api.idempotency import idempotent
from api.pagination import Page, Paging
from api.schemas.vendors import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    BalanceAdjustment,
    BillingUpdate,
    LowBalanceUpdate,
    MarkupUpdate,
    MemberCreate,
    MemberOut,
    Reason,
    VendorCreate,
    VendorDetail,
    VendorOut,
    VendorUpdate,
    WalletOut,
)
from api.schemas.webhooks import WebhookDeliveryOut
from ttelgo import invoicing, ledger, vendors
from ttelgo.audit_first import audited_transfer
from ttelgo.deactivation import (
    any_member,
    any_vendor,
    deactivate_account,
    live_member,
    reactivate_account,
    reactivate_vendor,
)
from ttelgo.errors import AppError
from ttelgo.models import (
    AccountKind,
    ApiKey,
    DeliveryStatus,
    LedgerEntryType,
    Transfer,
    Vendor,
    VendorStatus,
    VendorUser,
    VendorUserRole,
)
from ttelgo.webhooks import WebhookEventType
from ttelgo.webhooks.outbox import deliveries_query

router = APIRouter(prefix="/api/v1/admin/vendors", tags=["admin: vendors"])


async def _detail(session: Session, vendor: Vendor) -> VendorDetail:
    wallet = await ledger.wallet_balance(
        session, await ledger.vendor_wallet(session, vendor.id, vendor.currency)
    )
    return VendorDetail(**VendorOut.model_validate(vendor).model_dump(), wallet=WalletOut(**wallet.__dict__))


Deactivated = Annotated[bool, Query(description="list the deactivated ones instead")]


@router.get("", response_model=Page[VendorOut], summary="List vendors, newest first")
async def list_vendors(
    _: Admin,
    session: Session,
    paging: Paging,
    status: Annotated[VendorStatus | None, Query()] = None,
    deactivated: Deactivated = False,
) -> Page[VendorOut]:
    query = (
        select(Vendor)
        .where(Vendor.deleted_at.is_not(None) if deactivated else Vendor.deleted_at.is_(None))
        .order_by(Vendor.created_at.desc(), Vendor.id)
    )
    if status:
        query = query.where(Vendor.status == status)
    return await paging.fetch_page(session, query, VendorOut)


@router.post("", status_code=201, response_model=VendorDetail, summary="Onboard a vendor (status PENDING)")
async def create_vendor(request: Request, body: VendorCreate, admin: Admin) -> Response:
    async def handle() -> Response:
        async with request.app.state.sessions() as session, session.begin():
            vendor = await vendors.create_vendor(
                session,
                actor=admin.actor,
                name=body.name,
                contact_email=body.contact_email,
                billing_mode=body.billing_mode,
                credit_limit_minor=body.credit_limit_minor,
                currency=body.currency,
                markup_bps=body.markup_bps,
                request_id=request_id(request),
            )
            if body.owner_email and body.owner_password:
                await vendors.add_member(
                    session,
                    vendor,
                    email=body.owner_email,
                    password=body.owner_password,
                    role=VendorUserRole.OWNER,
                    actor=admin.actor,
                    request_id=request_id(request),
                )
            detail = await _detail(session, vendor)
        return JSONResponse(
            detail.model_dump(mode="json"),
            status_code=201,
            headers={"Location": f"/api/v1/admin/vendors/{vendor.id}"},
        )

    return await idempotent(request, admin.actor, handle)


@router.get("/{vendor_id}", response_model=VendorDetail, summary="One vendor with its wallet")
async def get_vendor(vendor_id: uuid.UUID, _: Admin, session: Session) -> VendorDetail:
    return await _detail(session, await vendors.get_vendor(session, vendor_id))


async def _change_status(
    request: Request,
    session: Session,
    admin: Admin,
    vendor_id: uuid.UUID,
    status: VendorStatus,
    reason: str | None,
) -> VendorDetail:
    async with session.begin():
        vendor = await vendors.get_vendor(session, vendor_id, lock=True)
        await vendors.set_status(
            session, vendor, status, actor=admin.actor, reason=reason, request_id=request_id(request)
        )
    return await _detail(session, vendor)


@router.post("/{vendor_id}/approve", response_model=VendorDetail, summary="Approve: the vendor may trade")
async def approve(
    request: Request, vendor_id: uuid.UUID, admin: Admin, session: Session, body: Reason | None = None
) -> VendorDetail:
    return await _change_status(
        request, session, admin, vendor_id, VendorStatus.APPROVED, body and body.reason
    )


@router.post(
    "/{vendor_id}/suspend", response_model=VendorDetail, summary="Suspend: every vendor call gets 403"
)
async def suspend(
    request: Request, vendor_id: uuid.UUID, admin: Admin, session: Session, body: Reason | None = None
) -> VendorDetail:
    return await _change_status(
        request, session, admin, vendor_id, VendorStatus.SUSPENDED, body and body.reason
    )


@router.patch(
    "/{vendor_id}",
    response_model=VendorDetail,
    summary="Correct the name, contact e-mail (unique among live vendors) or low-balance threshold",
)
async def update_vendor(
    request: Request, vendor_id: uuid.UUID, body: VendorUpdate, admin: Admin, session: Session
) -> VendorDetail:
    async with session.begin():
        vendor = await vendors.get_vendor(session, vendor_id, lock=True)
        await vendors.update_profile(
            session, vendor, body.changes(), actor=admin.actor, request_id=request_id(request)
        )
    return await _detail(session, vendor)


@router.post(
    "/{vendor_id}/reject",
    response_model=VendorDetail,
    summary="Turn down a PENDING application (409 for any other status)",
)
async def reject(
    request: Request, vendor_id: uuid.UUID, admin: Admin, session: Session, body: Reason | None = None
) -> VendorDetail:
    async with session.begin():
        vendor = await vendors.get_vendor(session, vendor_id, lock=True)
        await vendors.reject(
            session, vendor, actor=admin.actor, reason=body and body.reason, request_id=request_id(request)
        )
    return await _detail(session, vendor)


@router.post(
    "/{vendor_id}/deactivate",
    status_code=204,
    response_class=Response,
    summary="Deactivate (soft delete): keys revoked, team logged out, history kept; gone from the lists",
)
async def deactivate(
    request: Request, vendor_id: uuid.UUID, admin: Admin, session: Session, body: Reason | None = None
) -> Response:
    async with session.begin():
        vendor = await vendors.get_vendor(session, vendor_id, lock=True)
        await vendors.deactivate(
            session, vendor, actor=admin.actor, reason=body and body.reason, request_id=request_id(request)
        )
    return Response(status_code=204)


@router.post(
    "/{vendor_id}/reactivate",
    response_model=VendorDetail,
    summary="Reactivate a deactivated vendor and the team deactivated with it; its old API keys and "
    "sessions stay revoked (409 NOT_DEACTIVATED for a live vendor)",
)
async def reactivate(
    request: Request, vendor_id: uuid.UUID, admin: Admin, session: Session, body: Reason | None = None
) -> VendorDetail:
    async with session.begin():
        vendor = await any_vendor(session, vendor_id)
        await reactivate_vendor(
            session, vendor, actor=admin.actor, reason=body and body.reason, request_id=request_id(request)
        )
    return await _detail(session, vendor)


@router.patch("/{vendor_id}/billing", response_model=VendorDetail, summary="Billing mode and credit limit")
async def update_billing(
    request: Request, vendor_id: uuid.UUID, body: BillingUpdate, admin: Admin, session: Session
) -> VendorDetail:
    async with session.begin():
        vendor = await vendors.get_vendor(session, vendor_id, lock=True)
        await vendors.set_billing(
            session,
            vendor,
            billing_mode=body.billing_mode,
            credit_limit_minor=body.credit_limit_minor,
            actor=admin.actor,
            request_id=request_id(request),
        )
    return await _detail(session, vendor)


@router.patch("/{vendor_id}/markup", response_model=VendorDetail, summary="The vendor's price markup")
async def update_markup(
    request: Request, vendor_id: uuid.UUID, body: MarkupUpdate, admin: Admin, session: Session
) -> VendorDetail:
    async with session.begin():
        vendor = await vendors.get_vendor(session, vendor_id, lock=True)
        await vendors.set_markup(
            session, vendor, markup_bps=body.markup_bps, actor=admin.actor, request_id=request_id(request)
        )
    return await _detail(session, vendor)


@router.patch(
    "/{vendor_id}/low-balance",
    response_model=VendorDetail,
    summary="The available balance under which the vendor is warned (webhook and e-mail); null: never",
)
async def update_low_balance(
    request: Request, vendor_id: uuid.UUID, body: LowBalanceUpdate, admin: Admin, session: Session
) -> VendorDetail:
    async with session.begin():
        vendor = await vendors.get_vendor(session, vendor_id, lock=True)
        await vendors.update_profile(
            session,
            vendor,
            {"low_balance_threshold_minor": body.threshold_minor},
            actor=admin.actor,
            request_id=request_id(request),
            action="vendor.low_balance_threshold",
        )
    return await _detail(session, vendor)


@router.post(
    "/{vendor_id}/adjust-balance",
    response_model=VendorDetail,
    summary="Credit or debit the wallet by hand (an adjustment transfer plus an audit row, written just "
    "before it); a debit that would take back money an invoice was paid with is refused",
    responses={409: {"description": "INVOICE_PAYMENT_IN_USE: the debit would leave a PAID invoice unpaid"}},
)
async def adjust_balance(
    request: Request, vendor_id: uuid.UUID, body: BalanceAdjustment, admin: Admin
) -> Response:
    async def handle() -> Response:
        sessions = request.app.state.sessions
        async with sessions() as session, session.begin():
            vendor = await vendors.get_vendor(session, vendor_id)
            wallet = await ledger.vendor_wallet(session, vendor.id, vendor.currency)
            platform = await ledger.platform_account(session, AccountKind.ADJUSTMENTS, vendor.currency)
        # The transfer id derives from the idempotency key, so a retry after a crash cannot adjust twice.
        key = hashlib.sha256(request.headers["Idempotency-Key"].encode()).hexdigest()[:32]
        transfer_id = f"adjust:{vendor.id}:{key}"
        credit = body.amount_minor > 0
        # The vendor's invoice lock is held until the transfer has committed and what it pays is settled.
        async with sessions() as session, session.begin():
            await invoicing.lock_vendor(session, vendor.id)
            # PAID is final: money an invoice was paid with is not taken back (a retry of a debit that
            # went through is a replay, not a second debit)
            if not credit and await session.get(Transfer, transfer_id) is None:
                await invoicing.refuse_uncovering_debit(
                    session, vendor.id, vendor.currency, -body.amount_minor
                )
            async with audited_transfer(
                sessions,
                transfer_id,
                actor=admin.actor,
                action="vendor.adjust_balance",
                target_type="vendor",
                target_id=vendor.id,
                after={"amount_minor": body.amount_minor},
                reason=body.reason,
                request_id=request_id(request),
            ):
                # A debit below the wallet's floor raises InsufficientFunds, an AppError: refused (402).
                await ledger.create_transfer(
                    sessions,
                    ledger.TransferSpec(
                        id=transfer_id,
                        debit_account_id=platform.id if credit else wallet.id,
                        credit_account_id=wallet.id if credit else platform.id,
                        amount_minor=abs(body.amount_minor),
                        currency=vendor.currency,
                        code="adjustment",
                        entry_type=LedgerEntryType.ADJUSTMENT,
                        memo=body.reason[:500],
                    ),
                )
            if credit:  # money in may pay the vendor's invoices (see ttelgo.invoicing)
                await invoicing.settle_covered(
                    session, vendor.id, paid_by=transfer_id, actor=admin.actor, request_id=request_id(request)
                )
            detail = await _detail(session, vendor)
        return JSONResponse(detail.model_dump(mode="json"))

    if body.amount_minor == 0:
        raise AppError("VALIDATION_ERROR", "amount_minor must not be zero")
    return await idempotent(request, admin.actor, handle)


@router.get("/{vendor_id}/api-keys", response_model=list[ApiKeyOut], summary="The vendor's API keys")
async def list_keys(vendor_id: uuid.UUID, _: Admin, session: Session) -> list[ApiKeyOut]:
    await vendors.get_vendor(session, vendor_id)
    keys = await session.scalars(
        select(ApiKey).where(ApiKey.vendor_id == vendor_id).order_by(ApiKey.created_at)
    )
    return [ApiKeyOut.model_validate(k) for k in keys]


@router.post(
    "/{vendor_id}/api-keys",
    status_code=201,
    response_model=ApiKeyCreated,
    summary="Issue an API key; the full key is in this response only",
)
async def create_key(
    request: Request, vendor_id: uuid.UUID, body: ApiKeyCreate, admin: Admin, session: Session
) -> ApiKeyCreated:
    async with session.begin():
        vendor = await vendors.get_vendor(session, vendor_id)
        key, plaintext = await vendors.issue_api_key(
            session,
            vendor,
            name=body.name,
            actor=admin.actor,
            request_id=request_id(request),
            created_by_user_id=admin.user_id,
        )
    return ApiKeyCreated(**ApiKeyOut.model_validate(key).model_dump(), key=plaintext)


@router.delete("/{vendor_id}/api-keys/{key_id}", status_code=204, summary="Revoke an API key at once")
async def revoke_key(
    request: Request, vendor_id: uuid.UUID, key_id: uuid.UUID, admin: Admin, session: Session
) -> Response:
    async with session.begin():
        await vendors.revoke_api_key(
            session, vendor_id, key_id, actor=admin.actor, request_id=request_id(request)
        )
    return Response(status_code=204)


@router.post(
    "/{vendor_id}/users", status_code=201, response_model=MemberOut, summary="Add a vendor team member"
)
async def add_member(
    request: Request, vendor_id: uuid.UUID, body: MemberCreate, admin: Admin, session: Session
) -> MemberOut:
    async with session.begin():
        vendor = await vendors.get_vendor(session, vendor_id)
        member = await vendors.add_member(
            session,
            vendor,
            email=body.email,
            password=body.password,
            role=body.role,
            actor=admin.actor,
            request_id=request_id(request),
        )
    return MemberOut.model_validate(member)


@router.get(
    "/{vendor_id}/users",
    response_model=Page[MemberOut],
    summary="The vendor's team members, oldest first",
)
async def list_members(
    vendor_id: uuid.UUID, _: Admin, session: Session, paging: Paging, deactivated: Deactivated = False
) -> Page[MemberOut]:
    await vendors.get_vendor(session, vendor_id)
    query = (
        select(VendorUser)
        .where(VendorUser.vendor_id == vendor_id)
        .where(VendorUser.deleted_at.is_not(None) if deactivated else VendorUser.deleted_at.is_(None))
        .order_by(VendorUser.created_at, VendorUser.id)
    )
    return await paging.fetch_page(session, query, MemberOut)


@router.post(
    "/{vendor_id}/users/{member_id}/reactivate",
    response_model=MemberOut,
    summary="Reactivate a team member: logins work again, old sessions stay ended",
)
async def reactivate_member(
    request: Request,
    vendor_id: uuid.UUID,
    member_id: uuid.UUID,
    admin: Admin,
    session: Session,
    body: Reason | None = None,
) -> MemberOut:
    async with session.begin():
        await vendors.get_vendor(session, vendor_id)
        member = await any_member(session, vendor_id, member_id)
        await reactivate_account(
            session, member, actor=admin.actor, reason=body and body.reason, request_id=request_id(request)
        )
    return MemberOut.model_validate(member)


@router.post(
    "/{vendor_id}/users/{member_id}/deactivate",
    status_code=204,
    response_class=Response,
    summary="Deactivate a team member: logins refused, sessions ended, history kept",
)
async def deactivate_member(
    request: Request,
    vendor_id: uuid.UUID,
    member_id: uuid.UUID,
    admin: Admin,
    session: Session,
    body: Reason | None = None,
) -> Response:
    async with session.begin():
        await vendors.get_vendor(session, vendor_id)
        member = await live_member(session, vendor_id, member_id)
        await deactivate_account(
            session, member, actor=admin.actor, reason=body and body.reason, request_id=request_id(request)
        )
    return Response(status_code=204)


@router.get(
    "/{vendor_id}/webhook-deliveries",
    response_model=Page[WebhookDeliveryOut],
    summary="The vendor's webhook deliveries, newest first (filters `status`, `type`)",
)
async def list_webhook_deliveries(
    vendor_id: uuid.UUID,
    _: Admin,
    session: Session,
    paging: Paging,
    status: DeliveryStatus | None = None,
    event_type: Annotated[WebhookEventType | None, Query(alias="type")] = None,
) -> Page[WebhookDeliveryOut]:
    await vendors.get_vendor(session, vendor_id)
    query = deliveries_query(vendor_id, status, event_type.value if event_type else None)
    return await paging.fetch_page(session, query, WebhookDeliveryOut)
