"""Which bundles fit an eSIM as a top-up: those with the coverage of a bundle already on it.

A country bundle covers its countries; a regional or global bundle its regions (the countries of a region
come and go with the supplier's networks, the region stays), so a France eSIM is topped up with France
bundles and a Europe eSIM with Europe bundles.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ttelgo.catalogue.snapshot import CatalogueSnapshot, PricedBundle
from ttelgo.models import BundleScope, CatalogueBundle

Coverage = tuple[str, frozenset[str]]


def coverage(scope: str, country_isos: Iterable[str], regions: Iterable[str]) -> Coverage:
    if scope == BundleScope.LOCAL:
        return scope, frozenset(country_isos)
    return scope, frozenset(regions)


def covered_by(bundle: PricedBundle) -> Coverage:
    return coverage(bundle.scope, bundle.country_isos, bundle.regions)


async def coverages(session: AsyncSession, bundle_codes: Iterable[str]) -> set[Coverage]:
    """From the stored catalogue, on sale or not: the bundle an eSIM was bought with may be withdrawn since."""
    rows = await session.execute(
        select(CatalogueBundle.scope, CatalogueBundle.country_isos, CatalogueBundle.regions).where(
            CatalogueBundle.code.in_(set(bundle_codes))
        )
    )
    return {coverage(scope.value, isos, regions) for scope, isos, regions in rows}


def fitting(snapshot: CatalogueSnapshot, covered: set[Coverage]) -> list[PricedBundle]:
    """The bundles on sale that fit, cheapest first (by retail price, as the catalogue lists them)."""
    found = [b for b in snapshot.bundles if covered_by(b) in covered]
    return sorted(found, key=lambda b: (b.price_minor, b.code))
