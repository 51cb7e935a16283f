"""Admin pricing rules: read, replace (naming the version they were read at), and preview."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.fields import BundleCode, Reason
from ttelgo.catalogue.pricing import PricingRules

MAX_PREVIEW_BUNDLES = 25
MAX_VERSION = 2**31 - 1

_RULES_EXAMPLE = {
    "retail": {
        "default_markup_bps": 4000,
        "region_markup_bps": {"Europe": 3500},
        "bundle_markup_bps": {"esim_1GB_7D_FR_V2": 5000},
        "rounding": "charm_99",
    },
    "vendor": {"default_markup_bps": 1500},
}


class PricingOut(PricingRules):
    version: int = Field(description="name it in the PUT that changes these rules")
    updated_at: datetime | None = Field(description="when the rules last changed; null: never")
    updated_by: str | None = Field(description="who changed them last, e.g. admin:<id>")


class PricingUpdate(PricingRules):
    """Replaces both rule sets. Markups are in basis points (3500 = +35 %)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"version": 0, **_RULES_EXAMPLE, "reason": "summer campaign for Europe"}]
        }
    )

    version: Annotated[int, Field(ge=0, le=MAX_VERSION)] = Field(
        description="the version read with GET; another admin's change since then makes this a 409"
    )
    reason: Reason


class PricingPreviewRequest(PricingRules):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{**_RULES_EXAMPLE, "bundle_codes": ["esim_1GB_7D_FR_V2"]}]}
    )

    bundle_codes: list[BundleCode] | None = Field(
        default=None,
        max_length=MAX_PREVIEW_BUNDLES,
        description="bundles to price; omitted: a sample (bundles with a markup of their own, the cheapest "
        "of each region and scope)",
    )


class PricePreview(BaseModel):
    code: str
    currency: str
    wholesale_minor: int
    retail_minor: int = Field(description="today's retail (B2C) price")
    proposed_retail_minor: int
    vendor_minor: int = Field(description="today's price for vendors on the platform default markup")
    proposed_vendor_minor: int


class PricingPreview(BaseModel):
    version: int = Field(description="the version the current prices come from")
    items: list[PricePreview]
