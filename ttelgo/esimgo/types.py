"""Domain types the rest of TTelGo uses for supplier data: integer money, bytes, our own names."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class Country(_Frozen):
    iso: str
    name: str
    region: str


class Bundle(_Frozen):
    name: str
    description: str
    countries: tuple[Country, ...]
    roaming_countries: tuple[Country, ...]
    groups: tuple[str, ...]
    data_mb: int | None  # None when unlimited
    duration_days: int
    unlimited: bool
    speeds: tuple[str, ...]
    autostart: bool
    price_minor: int  # wholesale, in the supplier organisation's currency
    currency: str
    image_url: str | None = None

    @property
    def regions(self) -> tuple[str, ...]:
        return tuple(sorted({c.region for c in self.countries if c.region}))


class CataloguePage(_Frozen):
    bundles: tuple[Bundle, ...]
    page: int
    page_count: int
    rows: int


class EsimProfile(_Frozen):
    iccid: str
    matching_id: str
    smdp_address: str
    profile_status: str | None = None

    @property
    def lpa(self) -> str:
        """The activation code a phone scans (what the QR code encodes)."""
        return f"LPA:1${self.smdp_address}${self.matching_id}"


class PurchaseLine(_Frozen):
    """One line of an order we send: a bundle, how many, and for a top-up the eSIMs of ours it goes on."""

    bundle_name: str
    quantity: int
    iccids: tuple[str, ...] = ()


class SupplierOrderLine(_Frozen):
    bundle_name: str
    quantity: int
    esims: tuple[EsimProfile, ...] = ()  # the eSIMs this line assigned (absent while the order processes)


class SupplierOrder(_Frozen):
    reference: str
    status: str
    completed: bool
    total_minor: int
    currency: str
    lines: tuple[SupplierOrderLine, ...]
    created_at: datetime | None = None

    # A one-line order's bundle, quantity and eSIMs, as callers that buy one line at a time read them.
    @property
    def bundle_name(self) -> str:
        return self.lines[0].bundle_name if self.lines else ""

    @property
    def quantity(self) -> int:
        return self.lines[0].quantity if self.lines else 0

    @property
    def esims(self) -> tuple[EsimProfile, ...]:
        return tuple(e for line in self.lines for e in line.esims)


class BundleUsage(_Frozen):
    name: str
    state: str
    initial_bytes: int | None
    remaining_bytes: int | None
    unlimited: bool
    assigned_at: datetime | None
    reference: str | None = None  # the assignment's reference, as usage callbacks name it


class Organisation(_Frozen):
    name: str
    currency: str
    balance_minor: int
