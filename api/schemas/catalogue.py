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


class BundleOut(BaseModel):
    code: str
    description: str
    scope: str
    countries: list[CountryOut]
    regions: list[str]
    data_mb: int | None
    duration_days: int
    unlimited: bool
    speeds: list[str]
    price: Money


class CatalogueMeta(BaseModel):
    synced_at: datetime | None
    age_seconds: int | None
    stale: bool


class BundlePage(BaseModel):
    items: list[BundleOut]
    page: int
    page_size: int
    total: int
    catalogue: CatalogueMeta


class CountryCatalogue(BaseModel):
    country: CountryOut
    bundles: list[BundleOut]
    catalogue: CatalogueMeta
