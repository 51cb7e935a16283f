"""Admin: the retail and vendor pricing rules — read, replace (versioned, audited), preview."""

from __future__ import annotations

from fastapi import APIRouter, Request

from api.deps import Admin, Session, request_id
from api.schemas.pricing import (
    MAX_PREVIEW_BUNDLES,
    PricePreview,
    PricingOut,
    PricingPreview,
    PricingPreviewRequest,
    PricingUpdate,
)
from ttelgo.catalogue import rules
from ttelgo.catalogue.pricing import PricingRules
from ttelgo.errors import AppError

router = APIRouter(prefix="/api/v1/admin/pricing", tags=["admin: pricing"])


def _out(stored: rules.StoredPricing) -> PricingOut:
    return PricingOut(
        **stored.rules.model_dump(),
        version=stored.version,
        updated_at=stored.updated_at,
        updated_by=stored.updated_by,
    )


def _rules(body: PricingRules) -> PricingRules:
    return PricingRules(retail=body.retail, vendor=body.vendor)


@router.get("", response_model=PricingOut, summary="The pricing rules in force, with their version")
async def get_pricing(_: Admin, session: Session) -> PricingOut:
    return _out(await rules.current(session))


@router.put(
    "",
    response_model=PricingOut,
    summary="Replace the pricing rules; the catalogue and new orders use them within seconds",
    responses={
        409: {"description": "CONFLICT: the rules changed since `version` was read; nothing was saved"},
        422: {"description": "VALIDATION_ERROR: a bound, rounding, region or bundle code; nothing was saved"},
    },
)
async def put_pricing(request: Request, body: PricingUpdate, admin: Admin, session: Session) -> PricingOut:
    async with session.begin():
        stored = await rules.replace(
            session,
            _rules(body),
            expected_version=body.version,
            actor=admin.actor,
            reason=body.reason,
            request_id=request_id(request),
        )
    # This process prices with the new rules from the next request; the others at their next check.
    request.app.state.catalogue_cache.expire()
    return _out(stored)


@router.post(
    "/preview",
    response_model=PricingPreview,
    summary="Price a few bundles with proposed rules next to today's prices; nothing is saved",
    responses={422: {"description": "VALIDATION_ERROR or BUNDLE_UNKNOWN"}},
)
async def preview_pricing(
    request: Request, body: PricingPreviewRequest, _: Admin, session: Session
) -> PricingPreview:
    proposed = _rules(body)
    await rules.check_names(session, proposed.retail)
    now = await rules.current(session)
    bundles = (await request.app.state.catalogue_cache.get()).by_code
    if body.bundle_codes is None:
        chosen = rules.sample(bundles, proposed, MAX_PREVIEW_BUNDLES)
    else:
        unknown = [code for code in body.bundle_codes if code not in bundles]
        if unknown:
            raise AppError("BUNDLE_UNKNOWN", f"not on sale: {', '.join(map(repr, unknown))}")
        chosen = [bundles[code] for code in dict.fromkeys(body.bundle_codes)]
    items = []
    for bundle in chosen:
        prices = rules.compare(bundle, now.rules, proposed)
        items.append(
            PricePreview(
                code=bundle.code,
                currency=bundle.currency,
                wholesale_minor=bundle.wholesale_minor,
                retail_minor=prices.retail_now,
                proposed_retail_minor=prices.retail_proposed,
                vendor_minor=prices.vendor_now,
                proposed_vendor_minor=prices.vendor_proposed,
            )
        )
    return PricingPreview(version=now.version, items=items)
