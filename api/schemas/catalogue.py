"""Public catalogue shapes (documented in OpenAPI; the handlers serve pre-built JSON of this shape)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class Money(BaseModel):
    amount_minor: int
    currency: str
    amount: str  # decimal string, for display only


class CountryOut(BaseModel):
    iso: str
    name: str
    region: str


class BundleSummary(BaseModel):
    code: str
    description: str
    scope: str  # LOCAL, REGIONAL or GLOBAL
    country_isos: list[str]
    regions: list[str]
    data_mb: int | None
    duration_days: int
    unlimited: bool
    speeds: list[str]
    price: Money


class BundleOut(BundleSummary):
    countries: list[CountryOut]


class CatalogueMeta(BaseModel):
    synced_at: datetime | None
    age_seconds: int | None
    stale: bool


class BundlePage(BaseModel):
    items: list[BundleSummary]
    page: int
    page_size: int
    total: int
    catalogue: CatalogueMeta


class CountryCatalogue(BaseModel):
    country: CountryOut
    bundles: list[BundleSummary]
    catalogue: CatalogueMeta
