"""The public catalogue (no auth): served from the in-process priced snapshot, never from eSIM Go."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

import pycountry
from fastapi import APIRouter, Query, Request, Response
from pydantic_core import to_json

from api.schemas.catalogue import BundleOut, BundlePage, CountryCatalogue
from api.schemas.fields import PageNumber
from ttelgo.catalogue.snapshot import CatalogueSnapshot, PricedBundle
from ttelgo.errors import AppError

router = APIRouter(prefix="/api/v1/catalogue", tags=["catalogue"])
CACHE_CONTROL = "public, max-age=60"


class Sort(StrEnum):
    PRICE = "price"
    PRICE_DESC = "-price"
    DATA = "data"
    DATA_DESC = "-data"
    DURATION = "duration"


def _data_key(b: PricedBundle) -> float:
    return float("inf") if b.unlimited else float(b.data_mb or 0)


_SORT_KEYS = {
    Sort.PRICE: (lambda b: (b.price_minor, b.code), False),
    Sort.PRICE_DESC: (lambda b: (b.price_minor, b.code), True),
    Sort.DATA: (lambda b: (_data_key(b), b.price_minor), False),
    Sort.DATA_DESC: (lambda b: (_data_key(b), -b.price_minor), True),
    Sort.DURATION: (lambda b: (b.duration_days, b.price_minor), False),
}


def _country(iso: str) -> Any:
    country = pycountry.countries.get(alpha_2=iso.upper()) if len(iso) == 2 and iso.isalpha() else None
    if country is None:
        raise AppError("COUNTRY_CODE_INVALID", f"{iso!r} is not an ISO 3166-1 alpha-2 country code")
    return country


async def _snapshot(request: Request) -> CatalogueSnapshot:
    return await request.app.state.catalogue_cache.get()


def _meta(snapshot: CatalogueSnapshot, request: Request) -> dict[str, Any]:
    if snapshot.synced_at is None:
        return {"synced_at": None, "age_seconds": None, "stale": True}
    age = int((datetime.now(UTC) - snapshot.synced_at).total_seconds())
    stale_after = 3 * 60 * request.app.state.settings.catalogue_sync_minutes
    return {"synced_at": snapshot.synced_at.isoformat(), "age_seconds": age, "stale": age > stale_after}


def _cached(request: Request, snapshot: CatalogueSnapshot, build: Any) -> Response:
    """Weak ETag from the snapshot version and the exact query: a matching If-None-Match costs nothing."""
    tag = hashlib.sha256(f"{snapshot.version}|{request.url.path}|{request.url.query}".encode()).hexdigest()[
        :24
    ]
    etag = f'W/"{tag}"'
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    # pydantic-core's serializer: several times faster than json.dumps on catalogue-sized bodies.
    return Response(to_json(build()), media_type="application/json", headers=headers)


@router.get("", response_model=BundlePage, summary="Browse bundles with filters, sorting and paging")
async def list_bundles(
    request: Request,
    country: Annotated[
        str | None, Query(description="ISO 3166-1 alpha-2; includes regional and global bundles")
    ] = None,
    region: Annotated[str | None, Query(description="e.g. Europe, Asia")] = None,
    min_data_gb: Annotated[int | None, Query(ge=0, description="unlimited bundles always qualify")] = None,
    duration: Annotated[int | None, Query(ge=1, description="validity in days")] = None,
    unlimited: bool | None = None,
    sort: Sort = Sort.PRICE,
    page: Annotated[PageNumber, Query()] = 1,
    page_size: Annotated[int, Query(ge=1, le=100)] = 50,
) -> Response:
    iso = _country(country).alpha_2 if country else None
    snapshot = await _snapshot(request)

    def build() -> dict[str, Any]:
        bundles = snapshot.by_country.get(iso, ()) if iso else snapshot.bundles
        wanted_region = region.lower() if region else None
        selected = [
            b
            for b in bundles
            if (wanted_region is None or any(r.lower() == wanted_region for r in b.regions))
            and (min_data_gb is None or b.unlimited or (b.data_mb or 0) >= min_data_gb * 1000)
            and (duration is None or b.duration_days == duration)
            and (unlimited is None or b.unlimited == unlimited)
        ]
        key, reverse = _SORT_KEYS[sort]
        selected.sort(key=key, reverse=reverse)
        start = (page - 1) * page_size
        return {
            "items": [b.summary for b in selected[start : start + page_size]],
            "page": page,
            "page_size": page_size,
            "total": len(selected),
            "catalogue": _meta(snapshot, request),
        }

    return _cached(request, snapshot, build)


@router.get("/countries/{iso}", response_model=CountryCatalogue, summary="Every bundle usable in one country")
async def country_bundles(request: Request, iso: str) -> Response:
    country = _country(iso)
    snapshot = await _snapshot(request)

    def build() -> dict[str, Any]:
        bundles = sorted(snapshot.by_country.get(country.alpha_2, ()), key=lambda b: (b.price_minor, b.code))
        region = next(
            (c["region"] for b in bundles for c in b.body["countries"] if c["iso"] == country.alpha_2), ""
        )
        return {
            "country": {"iso": country.alpha_2, "name": country.name, "region": region},
            "bundles": [b.summary for b in bundles],
            "catalogue": _meta(snapshot, request),
        }

    return _cached(request, snapshot, build)


@router.get(
    "/bundles/{code}",
    response_model=BundleOut,
    summary="One bundle by its code",
    responses={404: {"description": "Unknown bundle (problem+json, BUNDLE_NOT_FOUND)"}},
)
async def get_bundle(request: Request, code: str) -> Response:
    snapshot = await _snapshot(request)
    bundle = snapshot.by_code.get(code)
    if bundle is None:
        raise AppError("BUNDLE_NOT_FOUND", f"no bundle named {code!r} is on sale")
    return _cached(request, snapshot, lambda: bundle.body)
