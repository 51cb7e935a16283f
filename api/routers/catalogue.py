"""The public catalogue: served from the in-process priced snapshot, never from eSIM Go.

Anyone may read it at retail prices; a vendor presenting its credentials sees its own prices. Each body is
rendered once per canonical query, snapshot and caller pricing, and served as bytes with an ETag (304 on a
match).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Coroutine, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

import jwt
import pycountry
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.routing import APIRoute
from pydantic_core import to_json

from api.deps import ApiKeyHeader, Bearer, require_vendor
from api.schemas.catalogue import BundleOut, BundlePage, CountryCatalogue
from api.schemas.fields import PageNumber
from ttelgo.auth import api_keys
from ttelgo.auth.tokens import PrincipalKind
from ttelgo.catalogue.snapshot import CatalogueSnapshot, PricedBundle, money
from ttelgo.errors import AppError
from ttelgo.models import Vendor

CACHE_CONTROL = "public, max-age=60"
# The answer depends on the credentials (a vendor's prices, or a 401 for a bad key): a shared cache must not
# hand an anonymous body to a request that carries them.
VARY = "Accept-Encoding, Authorization, X-API-Key"


class Sort(StrEnum):
    PRICE = "price"
    PRICE_DESC = "-price"
    DATA = "data"
    DATA_DESC = "-data"
    DURATION = "duration"


def _data_key(b: PricedBundle) -> float:
    return float("inf") if b.unlimited else float(b.data_mb or 0)


def _ordering(sort: Sort, price: Callable[[PricedBundle], int]) -> tuple[Callable[[PricedBundle], Any], bool]:
    """Sort key and direction, by the prices this caller sees."""
    return {
        Sort.PRICE: (lambda b: (price(b), b.code), False),
        Sort.PRICE_DESC: (lambda b: (price(b), b.code), True),
        Sort.DATA: (lambda b: (_data_key(b), price(b)), False),
        Sort.DATA_DESC: (lambda b: (_data_key(b), -price(b)), True),
        Sort.DURATION: (lambda b: (b.duration_days, price(b)), False),
    }[sort]


def _country(iso: str) -> Any:
    country = pycountry.countries.get(alpha_2=iso.upper()) if len(iso) == 2 and iso.isalpha() else None
    if country is None:
        raise AppError("COUNTRY_CODE_INVALID", f"{iso!r} is not an ISO 3166-1 alpha-2 country code")
    return country


@dataclass(frozen=True, slots=True)
class CallerPricing:
    """The prices a caller sees: retail for everyone but vendors, who see what they would pay."""

    key: str  # part of the render-cache key and the ETag: bodies priced differently never share either
    vendor_markup_bps: int | None = None  # set for vendors: their own markup or the platform default

    def price(self, snapshot: CatalogueSnapshot) -> Callable[[PricedBundle], int]:
        if self.vendor_markup_bps is None:
            return lambda bundle: bundle.price_minor
        return lambda bundle: snapshot.vendor_price(bundle, self.vendor_markup_bps)

    def item(
        self, snapshot: CatalogueSnapshot, bundle: PricedBundle, *, detail: bool = False
    ) -> dict[str, Any]:
        shown = bundle.body if detail else bundle.summary
        if self.vendor_markup_bps is None:
            return shown
        return {**shown, "price": money(self.price(snapshot)(bundle), bundle.currency)}


RETAIL = CallerPricing("retail")


def _claims_vendor(token: str) -> bool:
    """Whether a token says it is a vendor team member's. Read without verifying it: only such a token is
    then verified, and anything else is served retail, as anonymous callers are."""
    try:
        claimed = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return False
    return claimed.get("typ") == PrincipalKind.VENDOR_USER.value


async def caller_pricing(request: Request, header_key: ApiKeyHeader, bearer: Bearer) -> CallerPricing:
    """Anonymous callers, customers and staff see retail prices: any token that is not a vendor team
    member's is not even verified (an expired customer token still browses at retail, as it would without
    one). A vendor's API key or team member's token is checked like on vendor routes: a bad or expired one
    is a 401, never a silent fallback to retail prices."""
    presented = header_key or (bearer.credentials if bearer else None)
    if presented is None:
        return RETAIL
    is_key = header_key or api_keys.prefix_of(presented)
    if not is_key and not _claims_vendor(presented):
        return RETAIL
    async with request.app.state.sessions() as session:
        caller = await require_vendor(request, session, header_key, bearer)
        vendor = await session.get(Vendor, caller.vendor_id)
        own_markup = vendor.markup_bps if vendor else None
    snapshot = await _snapshot(request)
    markup = snapshot.vendor_rules.default_markup_bps if own_markup is None else own_markup
    return CallerPricing(f"vendor:{markup}", markup)


Pricing = Annotated[CallerPricing, Depends(caller_pricing)]
# The credentials are optional: the empty requirement says so in the OpenAPI document.
ANYONE = {"security": [{}]}


async def _snapshot(request: Request) -> CatalogueSnapshot:
    return await request.app.state.catalogue_cache.get()


def _meta(snapshot: CatalogueSnapshot, request: Request) -> dict[str, Any]:
    if snapshot.synced_at is None:
        return {"synced_at": None, "age_seconds": None, "stale": True}
    age = int((datetime.now(UTC) - snapshot.synced_at).total_seconds())
    stale_after = 3 * 60 * request.app.state.settings.catalogue_sync_minutes
    return {"synced_at": snapshot.synced_at.isoformat(), "age_seconds": age, "stale": age > stale_after}


def _matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110's weak comparison over the header's list (or `*`)."""
    if if_none_match.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag.removeprefix("W/") for tag in if_none_match.split(","))


def _accepts_gzip(accept_encoding: str) -> bool:
    for coding in accept_encoding.split(","):
        name, _, params = coding.partition(";")
        if name.strip().lower() == "gzip":
            weight = params.strip().removeprefix("q=")
            try:
                return not weight or float(weight) > 0
            except ValueError:
                return False
    return False


def _respond(
    request: Request,
    snapshot: CatalogueSnapshot,
    key: tuple[str, Hashable],
    build: Callable[[], Any] | None,
) -> Response | None:
    """The body rendered once per caller pricing, canonical query and snapshot (`key`), then served as bytes
    (gzipped when the client accepts it); None when there is nothing rendered to serve and no `build` to
    render it.

    The ETag names the snapshot version, the caller's pricing and the canonical query, so it holds as long as
    the prices and bundles do; it is weak because the body also says how old the copy is, which moves every
    second (a strong tag would change with it, and a revalidation after max-age could never be a 304).
    """
    etag = f'W/"{hashlib.sha256(repr((snapshot.version, key)).encode()).hexdigest()[:32]}"'
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL, "Vary": VARY}
    if_none_match = request.headers.get("if-none-match")
    if if_none_match and _matches(if_none_match, etag) and (build or snapshot.rendered.known(key)):
        return Response(status_code=304, headers=headers)
    rendered = snapshot.rendered.get(key)
    if rendered is None:
        if build is None:
            return None
        # pydantic-core's serializer: several times faster than json.dumps on catalogue-sized bodies.
        rendered = snapshot.rendered.put(key, to_json(build()))
    if _accepts_gzip(request.headers.get("accept-encoding", "")):
        headers["Content-Encoding"] = "gzip"
        return Response(rendered.gzipped, media_type="application/json", headers=headers)
    return Response(rendered.body, media_type="application/json", headers=headers)


def _raw_query(request: Request) -> tuple[str, bytes]:
    return request.scope["path"], request.scope["query_string"]


def _cached(
    request: Request,
    snapshot: CatalogueSnapshot,
    pricing: CallerPricing,
    canonical: Hashable,
    build: Callable[[], Any],
) -> Response:
    """`canonical`: the validated parameters that decide the body, whatever order or extras the query had."""
    snapshot.rendered.alias(_raw_query(request), canonical)
    response = _respond(request, snapshot, (pricing.key, canonical), build)
    assert response is not None  # with `build` there is always one
    return response


class RenderedFirst(APIRoute):
    """Answers an anonymous query already rendered from this snapshot before FastAPI parses and validates
    its parameters and resolves the caller: the same path and query string were valid, and stood for the
    same canonical query, when it was rendered, and that work was most of what serving it again cost.
    Anything else takes the route as declared."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        declared = super().get_route_handler()

        async def handler(request: Request) -> Response:
            if "authorization" not in request.headers and "x-api-key" not in request.headers:
                snapshot = await _snapshot(request)
                canonical = snapshot.rendered.canonical(_raw_query(request))
                if canonical is not None:
                    response = _respond(request, snapshot, (RETAIL.key, canonical), None)
                    if response is not None:
                        return response
            return await declared(request)

        return handler


router = APIRouter(prefix="/api/v1/catalogue", tags=["catalogue"], route_class=RenderedFirst)


@router.get(
    "",
    response_model=BundlePage,
    summary="Browse bundles with filters, sorting and paging",
    openapi_extra=ANYONE,
)
async def list_bundles(
    request: Request,
    pricing: Pricing,
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
    wanted_region = region.lower() if region else None
    snapshot = await _snapshot(request)

    def build() -> dict[str, Any]:
        bundles = snapshot.by_country.get(iso, ()) if iso else snapshot.bundles
        selected = [
            b
            for b in bundles
            if (wanted_region is None or any(r.lower() == wanted_region for r in b.regions))
            and (min_data_gb is None or b.unlimited or (b.data_mb or 0) >= min_data_gb * 1000)
            and (duration is None or b.duration_days == duration)
            and (unlimited is None or b.unlimited == unlimited)
        ]
        key, reverse = _ordering(sort, pricing.price(snapshot))
        selected.sort(key=key, reverse=reverse)
        start = (page - 1) * page_size
        return {
            "items": [pricing.item(snapshot, b) for b in selected[start : start + page_size]],
            "page": page,
            "page_size": page_size,
            "total": len(selected),
            "catalogue": _meta(snapshot, request),
        }

    canonical = ("list", iso, wanted_region, min_data_gb, duration, unlimited, sort.value, page, page_size)
    return _cached(request, snapshot, pricing, canonical, build)


@router.get(
    "/countries/{iso}",
    response_model=CountryCatalogue,
    summary="Every bundle usable in one country",
    openapi_extra=ANYONE,
)
async def country_bundles(request: Request, iso: str, pricing: Pricing) -> Response:
    country = _country(iso)
    snapshot = await _snapshot(request)

    def build() -> dict[str, Any]:
        key, _ = _ordering(Sort.PRICE, pricing.price(snapshot))
        bundles = sorted(snapshot.by_country.get(country.alpha_2, ()), key=key)
        region = next(
            (c["region"] for b in bundles for c in b.body["countries"] if c["iso"] == country.alpha_2), ""
        )
        return {
            "country": {"iso": country.alpha_2, "name": country.name, "region": region},
            "bundles": [pricing.item(snapshot, b) for b in bundles],
            "catalogue": _meta(snapshot, request),
        }

    return _cached(request, snapshot, pricing, ("country", country.alpha_2), build)


@router.get(
    "/bundles/{code}",
    response_model=BundleOut,
    summary="One bundle by its code",
    openapi_extra=ANYONE,
    responses={404: {"description": "Unknown bundle (problem+json, BUNDLE_NOT_FOUND)"}},
)
async def get_bundle(request: Request, code: str, pricing: Pricing) -> Response:
    snapshot = await _snapshot(request)
    bundle = snapshot.by_code.get(code)
    if bundle is None:
        raise AppError("BUNDLE_NOT_FOUND", f"no bundle named {code!r} is on sale")
    return _cached(
        request, snapshot, pricing, ("bundle", code), lambda: pricing.item(snapshot, bundle, detail=True)
    )
