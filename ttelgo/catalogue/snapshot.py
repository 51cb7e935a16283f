"""An in-process, priced copy of the stored catalogue, so a catalogue request touches no database.

The cache re-reads the catalogue only when the sync stamp or the pricing rules change (checked every few
seconds); when the database is briefly unreachable it keeps serving what it has.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ttelgo.catalogue.config import LAST_SYNCED_AT_KEY
from ttelgo.catalogue.pricing import (
    RETAIL_RULES_KEY,
    VENDOR_RULES_KEY,
    RetailRules,
    VendorRules,
    retail_price,
    stored_rules,
    vendor_price,
)
from ttelgo.models import CatalogueBundle, SystemConfig
from ttelgo.money import to_major

log = logging.getLogger(__name__)
GZIP_LEVEL = 6
REUSE_S = 1.0  # how long a rendered body is served again: it says how old the copy is, to the second


@dataclass(frozen=True, slots=True)
class PricedBundle:
    code: str
    scope: str
    country_isos: frozenset[str]
    regions: tuple[str, ...]
    data_mb: int | None
    duration_days: int
    unlimited: bool
    price_minor: int  # retail (B2C)
    wholesale_minor: int  # what eSIM Go charges us; vendor prices start from here
    currency: str
    summary: dict[str, Any]  # list item: coverage as ISO codes (a global bundle covers 100+ countries)
    body: dict[str, Any]  # detail: full country objects; both built once per snapshot


def money(amount_minor: int, currency: str) -> dict[str, Any]:
    return {
        "amount_minor": amount_minor,
        "currency": currency,
        "amount": str(to_major(amount_minor, currency)),
    }


def _priced(row: CatalogueBundle, rules: RetailRules) -> PricedBundle:
    price = retail_price(row.wholesale_minor, row.code, row.regions, rules)
    summary = {
        "code": row.code,
        "description": row.description,
        "scope": row.scope.value,
        "country_isos": row.country_isos,
        "regions": row.regions,
        "data_mb": row.data_mb,
        "duration_days": row.duration_days,
        "unlimited": row.unlimited,
        "speeds": row.speeds,
        "price": money(price, row.currency),
    }
    body = {**summary, "countries": row.countries}
    return PricedBundle(
        code=row.code,
        scope=row.scope.value,
        country_isos=frozenset(row.country_isos),
        regions=tuple(row.regions),
        data_mb=row.data_mb,
        duration_days=row.duration_days,
        unlimited=row.unlimited,
        price_minor=price,
        wholesale_minor=row.wholesale_minor,
        currency=row.currency,
        summary=summary,
        body=body,
    )


class Rendered:
    __slots__ = ("_gzipped", "body", "made_at")

    def __init__(self, body: bytes) -> None:
        self.made_at = time.monotonic()
        self.body = body
        self._gzipped: bytes | None = None

    @property
    def gzipped(self) -> bytes:
        """Compressed on the first request that accepts gzip (most do: a tenth of the bytes to write), then
        kept; a body nobody asks gzipped for is never compressed."""
        if self._gzipped is None:
            self._gzipped = gzip.compress(self.body, GZIP_LEVEL)
        return self._gzipped


class RenderedBodies:
    """Response bodies rendered from one snapshot, kept as bytes so a repeated query is not rendered again.

    Keyed by the caller's pricing and the query's validated, canonical parameters, so parameters in another
    order or unknown ones share one body. `aliases` remembers which canonical query a raw path and query
    string stood for, so that a repeated query can be answered before it is parsed again. Both are bounded
    (least recently used goes first): callers choose their query strings. Each body is reused for at most
    REUSE_S.
    """

    def __init__(self, max_entries: int = 256, max_aliases: int = 1024) -> None:
        self._entries: OrderedDict[Hashable, Rendered] = OrderedDict()
        self._aliases: OrderedDict[Hashable, Hashable] = OrderedDict()
        self._max_entries = max_entries
        self._max_aliases = max_aliases

    def get(self, key: Hashable) -> Rendered | None:
        entry = self._entries.get(key)
        if entry is None or time.monotonic() - entry.made_at > REUSE_S:
            return None
        self._entries.move_to_end(key)
        return entry

    def known(self, key: Hashable) -> bool:
        """Rendered from this snapshot at some time (so the query it stands for was a valid one)."""
        return key in self._entries

    def put(self, key: Hashable, body: bytes) -> Rendered:
        entry = self._entries[key] = Rendered(body)
        _bounded(self._entries, key, self._max_entries)
        return entry

    def alias(self, raw: Hashable, canonical: Hashable) -> None:
        self._aliases[raw] = canonical
        _bounded(self._aliases, raw, self._max_aliases)

    def canonical(self, raw: Hashable) -> Hashable | None:
        return self._aliases.get(raw)

    def __len__(self) -> int:
        return len(self._entries)


def _bounded(entries: OrderedDict[Hashable, Any], newest: Hashable, most: int) -> None:
    entries.move_to_end(newest)
    while len(entries) > most:
        entries.popitem(last=False)


@dataclass(frozen=True)
class CatalogueSnapshot:
    bundles: tuple[PricedBundle, ...]
    synced_at: datetime | None
    version: str
    vendor_rules: VendorRules
    by_code: dict[str, PricedBundle] = field(init=False)
    by_country: dict[str, tuple[PricedBundle, ...]] = field(init=False)
    # A new snapshot (new sync or new pricing rules) starts empty: nothing rendered from the old one is served.
    rendered: RenderedBodies = field(init=False, default_factory=RenderedBodies)

    def vendor_price(self, bundle: PricedBundle, vendor_markup_bps: int | None) -> int:
        return vendor_price(bundle.wholesale_minor, vendor_markup_bps, self.vendor_rules)

    def __post_init__(self) -> None:
        countries: dict[str, list[PricedBundle]] = {}
        for bundle in self.bundles:
            for iso in bundle.country_isos:
                countries.setdefault(iso, []).append(bundle)
        object.__setattr__(self, "by_code", {b.code: b for b in self.bundles})
        object.__setattr__(self, "by_country", {iso: tuple(bs) for iso, bs in countries.items()})


Marker = tuple[tuple[str, str], ...]
PRICING_VERSION_KEY = "pricing.version"  # moves with every change of the rules (ttelgo.catalogue.rules)
_CONFIG_KEYS = (LAST_SYNCED_AT_KEY, RETAIL_RULES_KEY, VENDOR_RULES_KEY, PRICING_VERSION_KEY)


async def _marker(session: AsyncSession) -> Marker:
    rows = await session.execute(
        select(SystemConfig.key, SystemConfig.updated_at).where(SystemConfig.key.in_(_CONFIG_KEYS))
    )
    return tuple(sorted((key, updated.isoformat()) for key, updated in rows))


async def load_snapshot(session: AsyncSession, marker: Marker) -> CatalogueSnapshot:
    config_rows = await session.execute(
        select(SystemConfig.key, SystemConfig.value).where(SystemConfig.key.in_(_CONFIG_KEYS))
    )
    config = {key: value for key, value in config_rows}
    rules = stored_rules(RetailRules, config.get(RETAIL_RULES_KEY))
    rows = await session.scalars(select(CatalogueBundle).where(CatalogueBundle.active.is_(True)))
    synced = config.get(LAST_SYNCED_AT_KEY)
    version = hashlib.sha256(repr(marker).encode()).hexdigest()[:20]
    return CatalogueSnapshot(
        bundles=tuple(_priced(row, rules) for row in rows),
        synced_at=datetime.fromisoformat(synced) if synced else None,
        version=version,
        vendor_rules=stored_rules(VendorRules, config.get(VENDOR_RULES_KEY)),
    )


class CatalogueCache:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], check_interval_s: float = 5.0) -> None:
        self._sessions = sessions
        self._interval = check_interval_s
        self._snapshot: CatalogueSnapshot | None = None
        self._marker: Marker | None = None
        self._checked_at = self._expired_at = float("-inf")
        self._lock = asyncio.Lock()

    def expire(self) -> None:
        """The next `get` checks the database at once (this process changed the rules; the others see the
        change within their check interval). A check already under way may have read the old marker, so
        it does not count as fresh."""
        self._expired_at = time.monotonic()

    def _fresh(self) -> CatalogueSnapshot | None:
        checked = self._checked_at
        if checked > self._expired_at and time.monotonic() - checked < self._interval:
            return self._snapshot
        return None

    async def get(self) -> CatalogueSnapshot:
        if snapshot := self._fresh():
            return snapshot
        async with self._lock:
            if snapshot := self._fresh():
                return snapshot
            started = time.monotonic()
            try:
                async with self._sessions() as session:
                    marker = await _marker(session)
                    if marker != self._marker or self._snapshot is None:
                        self._snapshot = await load_snapshot(session, marker)
                        self._marker = marker
            except Exception:
                if self._snapshot is None:
                    raise
                log.warning(
                    "catalogue refresh failed; serving the copy from %s",
                    self._snapshot.synced_at,
                    exc_info=True,
                )
            self._checked_at = started
            return self._snapshot
