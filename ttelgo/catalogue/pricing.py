"""Retail (B2C) and vendor (B2B) prices from wholesale cost, by rules kept in system_config.

Markups are in basis points (3500 = +35 %). Prices are integer minor units; a markup that lands on a
fraction of a cent rounds up, so we never sell below the rule.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field

RETAIL_RULES_KEY = "pricing.retail"
VENDOR_RULES_KEY = "pricing.vendor"


class Rounding(StrEnum):
    NONE = "none"
    CHARM_99 = "charm_99"  # up to the next x.99 (3.10 → 3.99, 4.00 → 4.99)


class RetailRules(BaseModel):
    default_markup_bps: int = Field(default=4000, ge=0)
    region_markup_bps: dict[str, int] = Field(default_factory=dict)
    bundle_markup_bps: dict[str, int] = Field(default_factory=dict)
    rounding: Rounding = Rounding.CHARM_99

    def markup_for(self, code: str, regions: list[str]) -> int:
        if code in self.bundle_markup_bps:
            return self.bundle_markup_bps[code]
        # A multi-region bundle takes the highest of its regions' markups.
        region_markups = [self.region_markup_bps[r] for r in regions if r in self.region_markup_bps]
        return max(region_markups, default=self.default_markup_bps)


class VendorRules(BaseModel):
    default_markup_bps: int = Field(default=1500, ge=0)


def apply_markup(wholesale_minor: int, markup_bps: int) -> int:
    return -(-wholesale_minor * (10_000 + markup_bps) // 10_000)  # ceiling division, exact in integers


def round_price(minor: int, rounding: Rounding) -> int:
    if rounding is Rounding.CHARM_99:
        return -(-(minor + 1) // 100) * 100 - 1
    return minor


def retail_price(wholesale_minor: int, code: str, regions: list[str], rules: RetailRules) -> int:
    return round_price(apply_markup(wholesale_minor, rules.markup_for(code, regions)), rules.rounding)


def vendor_price(wholesale_minor: int, vendor_markup_bps: int | None, rules: VendorRules) -> int:
    """Vendors buy at cost plus their own markup (set per vendor by an admin) or the platform default."""
    markup = rules.default_markup_bps if vendor_markup_bps is None else vendor_markup_bps
    return apply_markup(wholesale_minor, markup)
