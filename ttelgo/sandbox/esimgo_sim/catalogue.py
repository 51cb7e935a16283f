"""Deterministic, seeded bundle catalogue in eSIM Go's naming style, and its list/filter/page query."""

import fnmatch
import random
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, NamedTuple

from .countries import (
    AFRICA,
    ASIA,
    CARIBBEAN,
    CENTRAL_AMERICA,
    COUNTRIES,
    COUNTRIES_BY_ISO,
    DEARER,
    EUROPE,
    MIDDLE_EAST,
    NORTH_AMERICA,
    OCEANIA,
    REGION_COST,
    REGIONS,
    SOUTH_AMERICA,
    Country,
)
from .errors import ApiError

MB_PER_GB = 1000  # eSIM Go's dataAmount is in decimal megabytes
BYTES_PER_MB = 1_000_000
LOCAL_SIZES_GB: tuple[int, ...] = (1, 3, 5, 10, 20)
LOCAL_DAYS: tuple[int, ...] = (7, 15, 30)
REGIONAL_SIZES_GB: tuple[int, ...] = (1, 3, 5, 10, 20, 50)
ULE_DAYS: tuple[int, ...] = (3, 7, 15, 30)
ULP_DAYS: tuple[int, ...] = (7, 15, 30)

GROUP_FIXED = "Standard Fixed"
GROUP_LONG = "Standard Long Duration"
GROUP_ULE = "Standard Unlimited Essential"
GROUP_ULP = "Standard Unlimited Plus"
GROUPS: tuple[str, ...] = (GROUP_FIXED, GROUP_LONG, GROUP_ULE, GROUP_ULP)

IMAGE_BASE = "https://assets.esimgo-sim.test/bundles"
CENT = Decimal("0.01")


@dataclass(frozen=True)
class Bundle:
    name: str
    description: str
    groups: tuple[str, ...]
    countries: tuple[Country, ...]
    roaming: tuple[Country, ...]
    data_mb: int  # -1 for unlimited, as the live catalogue does
    duration_days: int
    speed: tuple[str, ...]
    unlimited: bool
    price: Decimal
    image_url: str
    autostart: bool = True
    billing_type: str = "FixedCost"

    @property
    def data_bytes(self) -> int:
        return -1 if self.unlimited else self.data_mb * BYTES_PER_MB

    def to_api(self) -> dict[str, Any]:
        def country(c: Country) -> dict[str, str]:
            return {"name": c.name, "region": c.region, "iso": c.iso}

        return {
            "name": self.name,
            "description": self.description,
            "groups": list(self.groups),
            "countries": [country(c) for c in self.countries],
            "roamingEnabled": [country(c) for c in self.roaming],
            "dataAmount": self.data_mb,
            "duration": self.duration_days,
            "speed": list(self.speed),
            "autostart": self.autostart,
            "unlimited": self.unlimited,
            "imageUrl": self.image_url,
            "price": float(self.price),
            "billingType": self.billing_type,
            "allowances": [
                {
                    "type": "DATA",
                    "service": "STANDARD",
                    "description": "Data",
                    "amount": self.data_mb,
                    "unit": "MB",
                    "unlimited": self.unlimited,
                }
            ],
        }


class RegionalPack(NamedTuple):
    code: str
    label: str
    version: str
    regions: tuple[str, ...]
    markup: float  # multi-network coverage costs more than the median member country


REGIONAL_PACKS: tuple[RegionalPack, ...] = (
    RegionalPack("EU", "Europe+", "V3", (EUROPE,), 1.1),
    RegionalPack("RAS", "Asia", "V2", (ASIA,), 1.25),
    RegionalPack("RME", "Middle East", "V2", (MIDDLE_EAST,), 1.2),
    RegionalPack("RAF", "Africa", "V2", (AFRICA,), 1.2),
    RegionalPack("RNA", "North America", "V2", (NORTH_AMERICA,), 1.1),
    RegionalPack("RLA", "Latin America", "V2", (CENTRAL_AMERICA, SOUTH_AMERICA), 1.2),
    RegionalPack("RCB", "Caribbean", "V2", (CARIBBEAN,), 1.15),
    RegionalPack("ROC", "Oceania", "V2", (OCEANIA,), 1.2),
    RegionalPack("RGL", "Global", "V2", REGIONS, 1.6),
)


def _money(value: float) -> Decimal:
    return Decimal(str(value)).quantize(CENT, rounding=ROUND_HALF_UP)


def fixed_price(gb: int, days: int, factor: float) -> Decimal:
    # Sub-linear in GB (bulk is cheaper per GB) and increasing in days; strictly monotonic in both.
    return _money((0.9 + 1.1 * gb**0.8 + 0.03 * days) * factor)


def unlimited_price(days: int, factor: float, tier: float) -> Decimal:
    return _money((1.0 + 1.8 * days**0.9) * factor * tier)


class _Coverage(NamedTuple):
    """What a family of bundles shares: name code, label, version, coverage, speeds and cost factor."""

    code: str
    label: str
    version: str
    countries: tuple[Country, ...]
    roaming: tuple[Country, ...]
    speed: tuple[str, ...]
    factor: float
    image: str


def _fixed_bundle(cov: _Coverage, gb: int, days: int) -> Bundle:
    return Bundle(
        name=f"esim_{gb}GB_{days}D_{cov.code}_{cov.version}",
        description=f"eSIM, {gb}GB, {days} Days, {cov.label}, {cov.version}",
        groups=(GROUP_LONG if days > 30 else GROUP_FIXED,),
        countries=cov.countries,
        roaming=cov.roaming,
        data_mb=gb * MB_PER_GB,
        duration_days=days,
        speed=cov.speed,
        unlimited=False,
        price=fixed_price(gb, days, cov.factor),
        image_url=f"{IMAGE_BASE}/{cov.image}.png",
    )


def _unlimited_bundle(cov: _Coverage, plus: bool, days: int) -> Bundle:
    kind, tier = ("ULP", "Plus") if plus else ("ULE", "Essential")
    return Bundle(
        name=f"esim_{kind}_{days}D_{cov.code}_{cov.version}",
        description=f"eSIM, Unlimited {tier}, {days} Days, {cov.label}, {cov.version}",
        groups=(GROUP_ULP if plus else GROUP_ULE,),
        countries=cov.countries,
        roaming=cov.roaming,
        data_mb=-1,
        duration_days=days,
        speed=cov.speed,
        unlimited=True,
        price=unlimited_price(days, cov.factor, 1.5 if plus else 1.0),
        image_url=f"{IMAGE_BASE}/{cov.image}.png",
    )


def generate_bundles(seed: int) -> list[Bundle]:
    rng = random.Random(f"{seed}:catalogue")
    bundles: list[Bundle] = []
    factors: dict[str, float] = {}
    for c in COUNTRIES:
        factors[c.iso] = REGION_COST[c.region] * DEARER.get(c.iso, 1.0) * rng.uniform(0.9, 1.15)
        speed = ("3G", "4G", "5G") if rng.random() < 0.55 else ("2G", "3G", "4G")
        with_plus = rng.random() < 0.35
        cov = _Coverage(c.iso, c.name, "V2", (c,), (), speed, factors[c.iso], c.iso.lower())
        bundles.extend(_fixed_bundle(cov, gb, days) for gb in LOCAL_SIZES_GB for days in LOCAL_DAYS)
        bundles.extend(_unlimited_bundle(cov, False, days) for days in ULE_DAYS)
        if with_plus:
            bundles.extend(_unlimited_bundle(cov, True, days) for days in ULP_DAYS)
    for pack in REGIONAL_PACKS:
        members = tuple(c for c in COUNTRIES if c.region in pack.regions)
        factor = statistics.median(factors[c.iso] for c in members) * pack.markup
        cov = _Coverage(
            pack.code,
            pack.label,
            pack.version,
            members,
            members,
            ("3G", "4G", "5G"),
            factor,
            pack.code.lower(),
        )
        bundles.extend(_fixed_bundle(cov, gb, days) for gb in REGIONAL_SIZES_GB for days in LOCAL_DAYS)
        bundles.append(_fixed_bundle(cov, 50, 90))
        bundles.extend(_unlimited_bundle(cov, False, days) for days in ULE_DAYS)
    return bundles


ORDERABLE_FIELDS: dict[str, str] = {
    "name": "name",
    "description": "description",
    "price": "price",
    "dataAmount": "data_mb",
    "duration": "duration_days",
}


class CataloguePage(NamedTuple):
    bundles: list[Bundle]
    rows: int
    page_size: int

    @property
    def page_count(self) -> int:
        return -(-self.rows // self.page_size)


class Catalogue:
    def __init__(self, bundles: Iterable[Bundle]) -> None:
        self.bundles: tuple[Bundle, ...] = tuple(bundles)
        self._by_name: dict[str, Bundle] = {b.name: b for b in self.bundles}
        if len(self._by_name) != len(self.bundles):
            raise ValueError("duplicate bundle names in catalogue")

    @classmethod
    def generate(cls, seed: int) -> "Catalogue":
        return cls(generate_bundles(seed))

    def get(self, name: str) -> Bundle | None:
        return self._by_name.get(name)  # case-sensitive on purpose, like the live API

    def require(self, name: str) -> Bundle:
        bundle = self.get(name)
        if bundle is None:
            raise ApiError(400, f"Bundle {name} not found")
        return bundle

    def query(
        self,
        *,
        page: int = 1,
        per_page: int = 50,
        direction: str = "asc",
        order_by: str | None = None,
        description: str | None = None,
        group: str | None = None,
        countries: Sequence[str] = (),
        region: str | None = None,
    ) -> CataloguePage:
        if page < 1 or per_page < 1:
            raise ApiError(400, "page and perPage must be positive integers")
        if direction.lower() not in ("asc", "desc"):
            raise ApiError(400, "direction must be asc or desc")
        if order_by is not None and order_by not in ORDERABLE_FIELDS:
            raise ApiError(400, f"orderBy must be one of {', '.join(ORDERABLE_FIELDS)}")
        unknown = [iso for iso in countries if iso not in COUNTRIES_BY_ISO]
        if unknown:
            raise ApiError(400, f"Unknown country ISO code(s): {', '.join(unknown)}")
        selected: list[Bundle] = list(self.bundles)
        if description:
            # The live API calls this a wildcard search: honour '*' and otherwise match a substring.
            pattern = description.lower() if "*" in description else f"*{description.lower()}*"
            selected = [b for b in selected if fnmatch.fnmatchcase(b.description.lower(), pattern)]
        if group:
            selected = [b for b in selected if group in b.groups]
        if countries:
            wanted = set(countries)
            selected = [b for b in selected if any(c.iso in wanted for c in b.countries)]
        if region:
            selected = [b for b in selected if any(c.region.lower() == region.lower() for c in b.countries)]
        if order_by is not None or direction.lower() == "desc":
            attr = ORDERABLE_FIELDS[order_by or "name"]
            selected.sort(key=lambda b: getattr(b, attr), reverse=direction.lower() == "desc")
        start = (page - 1) * per_page
        return CataloguePage(selected[start : start + per_page], len(selected), per_page)
