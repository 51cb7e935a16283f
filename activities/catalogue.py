"""Copies the supplier catalogue into catalogue_bundles, so no customer request waits on eSIM Go."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.contracts import SYNC_CATALOGUE, CatalogueSyncResult
from activities.supplier_errors import as_application_error
from ttelgo.catalogue.config import LAST_SYNCED_AT_KEY
from ttelgo.esimgo import Bundle, EsimGoClient, SupplierError
from ttelgo.models import BundleScope, CatalogueBundle, SystemConfig

GLOBAL_MIN_COUNTRIES = 50  # a bundle covering this many countries is sold as "global"


def scope_of(bundle: Bundle) -> BundleScope:
    if len(bundle.countries) >= GLOBAL_MIN_COUNTRIES:
        return BundleScope.GLOBAL
    return BundleScope.LOCAL if len(bundle.countries) == 1 else BundleScope.REGIONAL


def row_of(bundle: Bundle, synced_at: datetime) -> dict[str, Any]:
    return {
        "code": bundle.name,
        "description": bundle.description[:500],
        "scope": scope_of(bundle),
        "countries": [c.model_dump() for c in bundle.countries],
        "country_isos": sorted({c.iso for c in bundle.countries}),
        "regions": list(bundle.regions),
        "data_mb": bundle.data_mb,
        "duration_days": bundle.duration_days,
        "unlimited": bundle.unlimited,
        "speeds": list(bundle.speeds),
        "wholesale_minor": bundle.price_minor,
        "currency": bundle.currency,
        "active": True,
        "synced_at": synced_at,
    }


class CatalogueActivities:
    def __init__(self, esimgo: EsimGoClient, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.esimgo = esimgo
        self.sessions = sessions

    @activity.defn(name=SYNC_CATALOGUE)
    async def sync(self) -> CatalogueSyncResult:
        synced_at = datetime.now(UTC)
        try:
            rows = [row_of(b, synced_at) async for b in self.esimgo.iter_catalogue()]
        except SupplierError as exc:
            raise as_application_error(exc) from exc
        async with self.sessions() as session, session.begin():
            for start in range(0, len(rows), 500):
                stmt = insert(CatalogueBundle).values(rows[start : start + 500])
                fields = {name: stmt.excluded[name] for name in rows[0] if name != "code"}
                await session.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["code"], set_={**fields, "updated_at": func.now()}
                    )
                )
            # Bundles the supplier no longer lists stay for order history but are no longer sold.
            gone = await session.execute(
                update(CatalogueBundle)
                .where(CatalogueBundle.synced_at < synced_at, CatalogueBundle.active.is_(True))
                .values(active=False)
            )
            stamp = insert(SystemConfig).values(
                key=LAST_SYNCED_AT_KEY,
                value=synced_at.isoformat(),
                description="When the catalogue was last copied from eSIM Go",
            )
            await session.execute(
                stamp.on_conflict_do_update(
                    index_elements=["key"], set_={"value": stamp.excluded.value, "updated_at": func.now()}
                )
            )
        return CatalogueSyncResult(bundles=len(rows), deactivated=gone.rowcount, synced_at=synced_at)
