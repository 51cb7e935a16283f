"""The pricing rules in force, and replacing them: versioned, checked against the catalogue, audited.

The rules live in system_config (RETAIL_RULES_KEY, VENDOR_RULES_KEY) next to a version counter; a change
names the version it was made from, so two admins editing at once cannot silently undo each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from ttelgo.audit import record_action
from ttelgo.catalogue.pricing import (
    RETAIL_RULES_KEY,
    VENDOR_RULES_KEY,
    PricingRules,
    RetailRules,
    VendorRules,
    retail_price,
    stored_rules,
    vendor_price,
)
from ttelgo.catalogue.snapshot import PRICING_VERSION_KEY, PricedBundle
from ttelgo.errors import AppError
from ttelgo.models import CatalogueBundle, SystemConfig

_KEYS = (RETAIL_RULES_KEY, VENDOR_RULES_KEY, PRICING_VERSION_KEY)


@dataclass(frozen=True, slots=True)
class StoredPricing:
    version: int  # 0 until the first change through the API
    rules: PricingRules
    updated_at: datetime | None
    updated_by: str | None

    def audit_view(self) -> dict[str, Any]:
        return {"version": self.version, **self.rules.model_dump(mode="json")}


async def current(session: AsyncSession, *, lock: bool = False) -> StoredPricing:
    """With `lock`, the version row is locked until the transaction ends (it is created if missing, so
    there is always a row to lock and two first changes cannot both succeed)."""
    if lock:
        await session.execute(
            insert(SystemConfig)
            .values(key=PRICING_VERSION_KEY, value=0, description="version of the pricing rules")
            .on_conflict_do_nothing(index_elements=["key"])
        )
        await session.execute(
            select(SystemConfig.key).where(SystemConfig.key == PRICING_VERSION_KEY).with_for_update()
        )
    rows = {
        row.key: row
        for row in await session.scalars(
            select(SystemConfig).where(SystemConfig.key.in_(_KEYS)).execution_options(populate_existing=True)
        )
    }
    version = rows.get(PRICING_VERSION_KEY)
    retail, vendor = rows.get(RETAIL_RULES_KEY), rows.get(VENDOR_RULES_KEY)
    return StoredPricing(
        version=int(version.value) if version else 0,
        rules=PricingRules(
            retail=stored_rules(RetailRules, retail and retail.value),
            vendor=stored_rules(VendorRules, vendor and vendor.value),
        ),
        updated_at=version.updated_at if version else None,
        updated_by=version.updated_by if version else None,
    )


async def check_names(session: AsyncSession, rules: RetailRules) -> None:
    """Refuses (422) region names and bundle codes the catalogue has never held: a misspelt key would
    otherwise be stored and silently never apply."""
    errors: list[dict[str, Any]] = []
    if rules.region_markup_bps:
        known = set(await session.scalars(select(func.unnest(CatalogueBundle.regions)).distinct()))
        errors += [
            _unknown("region_markup_bps", name, "no bundle of the catalogue is in this region")
            for name in sorted(rules.region_markup_bps.keys() - known)
        ]
    if rules.bundle_markup_bps:
        codes = list(rules.bundle_markup_bps)
        known = set(
            await session.scalars(select(CatalogueBundle.code).where(CatalogueBundle.code.in_(codes)))
        )
        errors += [
            _unknown("bundle_markup_bps", code, "the catalogue has no bundle with this code")
            for code in sorted(set(codes) - known)
        ]
    if errors:
        names = ", ".join(repr(error["location"][-1]) for error in errors[:10])
        raise AppError("VALIDATION_ERROR", f"unknown in the catalogue: {names}", extra={"errors": errors})


def _unknown(field: str, name: str, message: str) -> dict[str, Any]:
    return {"location": ["body", "retail", field, name], "message": message, "type": "unknown_name"}


async def replace(
    session: AsyncSession,
    rules: PricingRules,
    *,
    expected_version: int,
    actor: str,
    reason: str,
    request_id: str | None,
) -> StoredPricing:
    """In the caller's transaction, with the audit row: the change commits with its record or not at all."""
    before = await current(session, lock=True)
    if expected_version != before.version:
        raise AppError(
            "CONFLICT",
            f"the pricing rules are at version {before.version}, not {expected_version}; "
            "read them again and reapply your change",
            extra={"current_version": before.version},
        )
    await check_names(session, rules.retail)
    values = {
        RETAIL_RULES_KEY: rules.retail.model_dump(mode="json"),
        VENDOR_RULES_KEY: rules.vendor.model_dump(mode="json"),
        PRICING_VERSION_KEY: before.version + 1,
    }
    for key, value in values.items():
        stmt = insert(SystemConfig).values(key=key, value=value, updated_by=actor)
        # updated_at moves with every change: it is what CatalogueCache watches to re-price.
        await session.execute(
            stmt.on_conflict_do_update(
                index_elements=["key"],
                set_={"value": stmt.excluded.value, "updated_by": actor, "updated_at": func.now()},
            )
        )
    after = await current(session)
    record_action(
        session,
        actor=actor,
        action="pricing.update",
        target_type="pricing",
        target_id=after.version,
        before=before.audit_view(),
        after=after.audit_view(),
        reason=reason,
        request_id=request_id,
    )
    return after


@dataclass(frozen=True, slots=True)
class PriceComparison:
    retail_now: int
    retail_proposed: int
    vendor_now: int  # at the platform default; vendors with a markup of their own keep it
    vendor_proposed: int


def compare(bundle: PricedBundle, now: PricingRules, proposed: PricingRules) -> PriceComparison:
    regions, wholesale = list(bundle.regions), bundle.wholesale_minor
    return PriceComparison(
        retail_now=retail_price(wholesale, bundle.code, regions, now.retail),
        retail_proposed=retail_price(wholesale, bundle.code, regions, proposed.retail),
        vendor_now=vendor_price(wholesale, None, now.vendor),
        vendor_proposed=vendor_price(wholesale, None, proposed.vendor),
    )


def sample(bundles: dict[str, PricedBundle], proposed: PricingRules, limit: int) -> list[PricedBundle]:
    """Bundles worth a look when none are named: those with a markup of their own, then the cheapest of
    each region, then of each scope."""
    chosen = {code: bundles[code] for code in proposed.retail.bundle_markup_bps if code in bundles}
    by_price = sorted(bundles.values(), key=lambda b: (b.price_minor, b.code))
    for key in (lambda b: b.regions, lambda b: b.scope):
        seen: set[object] = set()
        for bundle in by_price:
            if key(bundle) not in seen:
                seen.add(key(bundle))
                chosen.setdefault(bundle.code, bundle)
    return list(chosen.values())[:limit]
