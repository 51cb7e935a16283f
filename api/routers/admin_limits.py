"""Admin: a vendor's API traffic — its rate limit (audited) and its usage report."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query, Request

from api.deps import Admin, Session, request_id
from api.schemas.usage import UsageReport, VendorRateLimitOut, VendorRateLimitUpdate
from api.usage_report import usage_report
from ttelgo import vendors
from ttelgo.audit import record_action
from ttelgo.models import Vendor
from ttelgo.ratelimit.limiter import Policies

router = APIRouter(prefix="/api/v1/admin/vendors", tags=["admin: vendors"])


def _out(request: Request, vendor: Vendor) -> VendorRateLimitOut:
    policies = Policies.from_settings(request.app.state.settings)  # also when limits are switched off
    return VendorRateLimitOut(
        vendor_id=vendor.id,
        requests_per_minute=vendor.rate_limit_per_minute,
        policy=policies.for_vendor(vendor.rate_limit_per_minute).header,
    )


@router.get("/{vendor_id}/rate-limit", response_model=VendorRateLimitOut, summary="The vendor's rate limit")
async def get_rate_limit(
    request: Request, vendor_id: uuid.UUID, admin: Admin, session: Session
) -> VendorRateLimitOut:
    return _out(request, await vendors.get_vendor(session, vendor_id))


@router.put(
    "/{vendor_id}/rate-limit",
    response_model=VendorRateLimitOut,
    summary="Set the requests per minute the vendor's keys and team may make together (null: the default)",
)
async def set_rate_limit(
    request: Request, vendor_id: uuid.UUID, body: VendorRateLimitUpdate, admin: Admin, session: Session
) -> VendorRateLimitOut:
    async with session.begin():
        vendor = await vendors.get_vendor(session, vendor_id, lock=True)
        before = vendor.rate_limit_per_minute
        vendor.rate_limit_per_minute = body.requests_per_minute
        record_action(
            session,
            actor=admin.actor,
            action="vendor.rate_limit",
            target_type="vendor",
            target_id=vendor.id,
            before={"requests_per_minute": before},
            after={"requests_per_minute": body.requests_per_minute},
            reason=body.reason,
            request_id=request_id(request),
        )
    # This process applies it at once; the others once their cached copy expires (RATE_LIMIT_CACHE_SECONDS).
    request.app.state.callers.forget_vendor(vendor.id)
    return _out(request, vendor)


@router.get(
    "/{vendor_id}/usage",
    response_model=UsageReport,
    response_model_by_alias=True,
    summary="The vendor's API calls by day (UTC) and endpoint: requests, errors, latency",
)
async def vendor_usage(
    vendor_id: uuid.UUID,
    admin: Admin,
    session: Session,
    from_: Annotated[date | None, Query(alias="from")] = None,
    to: date | None = None,
) -> UsageReport:
    await vendors.get_vendor(session, vendor_id)
    return await usage_report(session, vendor_id, from_, to)
