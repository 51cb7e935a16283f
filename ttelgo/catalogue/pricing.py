"""Retail (B2C) and vendor (B2B) prices from wholesale cost, by rules kept in system_config.

Markups are in basis points (3500 = +35 %). Prices are integer minor units; a markup that lands on a
fraction of a cent rounds up, so we never sell below the rule.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

RETAIL_RULES_KEY = "pricing.retail"
VENDOR_RULES_KEY = "pricing.vendor"

MAX_MARKUP_BPS = 100_000  # +1000 %: far above any real markup, so a slipped digit is refused, not sold
MAX_OVERRIDES = 5_000  # per map; the catalogue holds a few thousand bundles
MarkupBps = Annotated[int, Field(ge=0, le=MAX_MARKUP_BPS)]
_ONE_LINE = r"^[^\x00-\x1f\x7f]*$"  # what PostgreSQL text and a name may hold
RegionName = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=_ONE_LINE)]
BundleCode = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=_ONE_LINE)]


class Rounding(StrEnum):
    NONE = "none"
    CHARM_99 = "charm_99"  # up to the next x.99 (3.10 → 3.99, 4.00 → 4.99)


class RetailRules(BaseModel):
    # An unknown field in a PUT is a caller's typo; stored rules are read with `stored_rules`, which ignores
    # fields set in SQL before the API existed.
    model_config = ConfigDict(extra="forbid")

    default_markup_bps: MarkupBps = 4000
    region_markup_bps: dict[RegionName, MarkupBps] = Field(
        default_factory=dict, max_length=MAX_OVERRIDES, description="by region name, e.g. Europe"
    )
    bundle_markup_bps: dict[BundleCode, MarkupBps] = Field(
        default_factory=dict, max_length=MAX_OVERRIDES, description="by bundle code; wins over regions"
    )
    rounding: Rounding = Rounding.CHARM_99

    def markup_for(self, code: str, regions: list[str]) -> int:
        if code in self.bundle_markup_bps:
            return self.bundle_markup_bps[code]
        # A multi-region bundle takes the highest of its regions' markups.
        region_markups = [self.region_markup_bps[r] for r in regions if r in self.region_markup_bps]
        return max(region_markups, default=self.default_markup_bps)


class VendorRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default_markup_bps: MarkupBps = Field(
        default=1500, description="for vendors without a markup of their own"
    )


class PricingRules(BaseModel):
    """Both rule sets, as an admin reads and replaces them together."""

    model_config = ConfigDict(extra="forbid")

    retail: RetailRules = Field(default_factory=RetailRules)
    vendor: VendorRules = Field(default_factory=VendorRules)


Rules = TypeVar("Rules", bound=BaseModel)


def stored_rules(model: type[Rules], value: dict[str, object] | None) -> Rules:
    """Rules as kept in system_config: fields this version does not know are ignored, not refused, so rules
    edited by hand before the pricing API cannot stop the catalogue from loading."""
    return model.model_validate({k: v for k, v in (value or {}).items() if k in model.model_fields})


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
