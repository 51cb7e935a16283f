"""Catalogue bodies rendered once and served as bytes (issue 16): ETag and 304, a new body after a sync or a
pricing change, one body per canonical query (reordered or unknown parameters render nothing new), and
prices per caller (retail for anyone, a vendor's own prices for that vendor) that never reach a caller
priced otherwise, nor a shared cache's copy for another caller.

Bodies are compared by what they say, without `catalogue.age_seconds`: a body is served again for about a
second only, so on a busy machine two requests may get two renderings a second apart."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, update

import api.routers.catalogue as catalogue_router
import ttelgo.catalogue.snapshot as snapshot_module
from tests.b2b.conftest import B2B, BUNDLE, b2b  # noqa: F401 (fixture)
from ttelgo.auth.tokens import PrincipalKind, TokenClaims, issue
from ttelgo.catalogue.config import LAST_SYNCED_AT_KEY
from ttelgo.models import SystemConfig

LIST = "/api/v1/catalogue"
FR = {"country": "FR", "page_size": 100}
PATHS = [(LIST, FR), (f"{LIST}/countries/FR", {}), (f"{LIST}/bundles/{BUNDLE}", {})]


def _markup(wholesale: int, bps: int) -> int:
    return -(-wholesale * (10_000 + bps) // 10_000)


def _prices(body: dict[str, Any]) -> dict[str, int]:
    items = body.get("items") or body.get("bundles") or [body]
    return {item["code"]: item["price"]["amount_minor"] for item in items}


def _said(body: dict[str, Any]) -> dict[str, Any]:
    """What a body says, but for how old the copy is (which moves every second)."""
    if "catalogue" not in body:  # a bundle's detail says nothing of the copy
        return body
    return {**body, "catalogue": {k: v for k, v in body["catalogue"].items() if k != "age_seconds"}}


def _renders(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Counts bodies rendered from here on; one rendering is served again for as long as the test runs."""
    rendered: list[object] = []
    real = catalogue_router.to_json
    monkeypatch.setattr(catalogue_router, "to_json", lambda value: rendered.append(value) or real(value))
    monkeypatch.setattr(snapshot_module, "REUSE_S", 3600.0)
    return rendered


def _app(world: B2B) -> Any:
    return world.api._transport.app  # type: ignore[attr-defined]


@pytest.mark.parametrize(("path", "params"), PATHS)
async def test_a_matching_if_none_match_is_304_and_anything_else_the_body(
    b2b: B2B,  # noqa: F811
    path: str,
    params: dict[str, Any],
) -> None:
    first = await b2b.api.get(path, params=params)
    assert first.status_code == 200, first.text
    etag = first.headers["ETag"]
    again = await b2b.api.get(path, params=params)
    assert again.headers["ETag"] == etag and _said(again.json()) == _said(first.json())
    for header in (etag, f'"nope", {etag}', "*", etag.removeprefix("W/")):
        cached = await b2b.api.get(path, params=params, headers={"If-None-Match": header})
        assert cached.status_code == 304 and cached.content == b"", header
        assert cached.headers["ETag"] == etag
    for header in ('"nope"', 'W/"nope"', ""):
        fresh = await b2b.api.get(path, params=params, headers={"If-None-Match": header})
        assert fresh.status_code == 200 and _said(fresh.json()) == _said(first.json()), header


@pytest.mark.parametrize("accept", ["gzip", "br, gzip;q=0.5", "identity", "gzip;q=0", ""])
async def test_gzip_when_accepted_and_the_same_json_either_way(b2b: B2B, accept: str) -> None:  # noqa: F811
    plain = await b2b.api.get(LIST, params=FR, headers={"Accept-Encoding": "identity"})
    response = await b2b.api.get(LIST, params=FR, headers={"Accept-Encoding": accept})
    gzipped = accept.startswith("br") or accept == "gzip"
    assert response.headers.get("Content-Encoding") == ("gzip" if gzipped else None)
    assert _said(response.json()) == _said(plain.json()) and response.headers["ETag"] == plain.headers["ETag"]
    if gzipped:
        assert int(response.headers["Content-Length"]) < len(plain.content) / 4


@pytest.mark.parametrize(("path", "params"), PATHS)
async def test_the_answer_varies_with_credentials_and_encoding(
    b2b: B2B,  # noqa: F811
    path: str,
    params: dict[str, Any],
) -> None:
    """A shared cache keeps an anonymous answer for 60 s: it must not give it to a request with a vendor's
    credentials (their prices, or a 401 for a bad key)."""
    response = await b2b.api.get(path, params=params)
    assert response.headers["Cache-Control"] == "public, max-age=60"
    vary = {name.strip().lower() for name in response.headers["Vary"].split(",")}
    assert vary >= {"accept-encoding", "authorization", "x-api-key"}


async def test_each_body_is_rendered_once_per_query(
    b2b: B2B,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rendered = _renders(monkeypatch)
    answers = [await b2b.api.get(LIST, params=FR) for _ in range(5)]
    assert len({answer.content for answer in answers}) == 1 and len(rendered) == 1
    other = await b2b.api.get(LIST, params={"country": "DE"})
    assert other.status_code == 200 and len(rendered) == 2


async def test_reordered_or_unknown_parameters_render_nothing_new(
    b2b: B2B,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gzipped: list[bytes] = []
    real_compress = snapshot_module.gzip.compress
    monkeypatch.setattr(
        snapshot_module.gzip,
        "compress",
        lambda data, level: gzipped.append(data) or real_compress(data, level),
    )
    rendered = _renders(monkeypatch)
    first = await b2b.api.get(
        f"{LIST}?country=FR&page_size=100&sort=price", headers={"Accept-Encoding": "identity"}
    )
    assert first.status_code == 200 and len(rendered) == 1
    assert gzipped == [], "nobody asked for gzip yet"
    variants = [
        f"{LIST}?page_size=100&country=FR",
        f"{LIST}?sort=price&page_size=100&country=fr",
        *(f"{LIST}?country=FR&page_size=100&junk={i}" for i in range(300)),
    ]
    for url in variants:
        answer = await b2b.api.get(url, headers={"Accept-Encoding": "identity"})
        assert answer.status_code == 200 and answer.headers["ETag"] == first.headers["ETag"], url
    assert len(rendered) == 1 and gzipped == []
    snapshot = await _app(b2b).state.catalogue_cache.get()
    assert len(snapshot.rendered) == 1
    # Compressed once, for the first client that takes gzip, then served compressed as it is.
    for _ in range(3):
        answer = await b2b.api.get(variants[0], headers={"Accept-Encoding": "gzip"})
        assert answer.headers["Content-Encoding"] == "gzip"
    assert len(gzipped) == 1 and len(rendered) == 1


async def test_a_pricing_change_is_served_at_once_and_old_etags_no_longer_match(b2b: B2B) -> None:  # noqa: F811
    before = await b2b.api.get(LIST, params=FR)
    etag, prices = before.headers["ETag"], _prices(before.json())
    rules = (await b2b.api.get("/api/v1/admin/pricing", headers=b2b.admin)).json()
    changed = await b2b.api.put(
        "/api/v1/admin/pricing",
        json={
            "version": rules["version"],
            "retail": {**rules["retail"], "default_markup_bps": 9000, "rounding": "none"},
            "vendor": rules["vendor"],
            "reason": "test",
        },
        headers=b2b.admin,
    )
    assert changed.status_code == 200, changed.text

    after = await b2b.api.get(LIST, params=FR, headers={"If-None-Match": etag})
    assert after.status_code == 200 and after.headers["ETag"] != etag
    new_prices = _prices(after.json())
    assert new_prices.keys() == prices.keys()
    assert all(new_prices[code] > prices[code] for code in prices)


async def test_a_new_catalogue_copy_gives_new_bodies_and_etags(b2b: B2B) -> None:  # noqa: F811
    before = await b2b.api.get(LIST, params=FR)
    synced_at = datetime.now(UTC).isoformat()
    async with b2b.sessions() as session, session.begin():
        await session.execute(
            update(SystemConfig)
            .where(SystemConfig.key == LAST_SYNCED_AT_KEY)
            .values(value=synced_at, updated_at=func.now())
        )
    _app(b2b).state.catalogue_cache.expire()  # as a sync would be seen within the check interval

    after = await b2b.api.get(LIST, params=FR, headers={"If-None-Match": before.headers["ETag"]})
    assert after.status_code == 200 and after.headers["ETag"] != before.headers["ETag"]
    assert after.json()["catalogue"]["synced_at"] == synced_at


@pytest.mark.parametrize(("path", "params"), PATHS)
async def test_vendors_see_their_own_prices_and_nobody_else_gets_them(
    b2b: B2B,  # noqa: F811
    synced_template: dict[str, int],
    path: str,
    params: dict[str, Any],
) -> None:
    at_cost = await b2b.new_vendor(markup_bps=0)
    dear = await b2b.new_vendor(markup_bps=2000)
    on_default = await b2b.new_vendor(markup_bps=None)
    customer_token = b2b.admin  # a staff token: not a vendor, so retail like a customer's

    # Vendors first, so a body rendered for one of them would be there to leak to whoever comes next.
    answers = {}
    for caller, headers in (
        ("at_cost", at_cost.headers),
        ("dear", {"Authorization": f"Bearer {dear.key}"}),
        ("on_default", on_default.headers),
        ("anonymous", {}),
        ("staff", customer_token),
    ):
        response = await b2b.api.get(path, params=params, headers=headers)
        assert response.status_code == 200, response.text
        answers[caller] = response

    wholesale = synced_template[BUNDLE]
    expected = {
        "at_cost": wholesale,
        "dear": _markup(wholesale, 2000),
        "on_default": _markup(wholesale, 1500),
    }
    for caller, price in expected.items():
        assert _prices(answers[caller].json())[BUNDLE] == price, caller
    retail = _prices(answers["anonymous"].json())
    assert retail[BUNDLE] > _markup(wholesale, 2000) and _prices(answers["staff"].json()) == retail
    etags = {caller: answer.headers["ETag"] for caller, answer in answers.items()}
    assert len({etags["at_cost"], etags["dear"], etags["on_default"], etags["anonymous"]}) == 4
    # A vendor's ETag is not a match for anybody priced otherwise.
    for caller, headers in (("anonymous", {}), ("dear", dear.headers)):
        response = await b2b.api.get(
            path, params=params, headers={**headers, "If-None-Match": etags["at_cost"]}
        )
        assert response.status_code == 200, caller
        assert _prices(response.json()) == _prices(answers[caller].json()), caller
        assert response.headers["ETag"] == etags[caller], caller
    # Vendor answers carry credentials: no shared cache may keep them.
    assert answers["at_cost"].headers["Cache-Control"] == "no-store"
    assert answers["anonymous"].headers["Cache-Control"] == "public, max-age=60"


async def test_a_bad_vendor_key_is_401_not_retail(b2b: B2B) -> None:  # noqa: F811
    response = await b2b.api.get(LIST, params=FR, headers={"X-API-Key": "ttg_000000000000_nope"})
    assert response.status_code == 401 and response.json()["code"] == "API_KEY_INVALID"


@pytest.mark.parametrize(("path", "params"), PATHS)
async def test_a_vendor_after_an_anonymous_caller_never_gets_the_retail_body(
    b2b: B2B,  # noqa: F811
    synced_template: dict[str, int],
    monkeypatch: pytest.MonkeyPatch,
    path: str,
    params: dict[str, Any],
) -> None:
    _renders(monkeypatch)  # the anonymous body stays ready to serve for the whole test
    at_cost = await b2b.new_vendor(markup_bps=0)
    anonymous = await b2b.api.get(path, params=params)
    again = await b2b.api.get(path, params=params)  # now served from the rendered bytes
    assert again.headers["ETag"] == anonymous.headers["ETag"]
    for headers in (at_cost.headers, {"Authorization": f"Bearer {at_cost.key}"}):
        for extra in ({}, {"If-None-Match": anonymous.headers["ETag"]}):
            response = await b2b.api.get(path, params=params, headers={**headers, **extra})
            assert response.status_code == 200, response.text
            assert _prices(response.json())[BUNDLE] == synced_template[BUNDLE]
            assert response.headers["ETag"] != anonymous.headers["ETag"]
            assert response.headers["Cache-Control"] == "no-store"


def _token(world: B2B, kind: PrincipalKind, *, expired: bool) -> dict[str, str]:
    claims = TokenClaims(
        subject=uuid.uuid4(),
        kind=kind,
        role="developer" if kind is PrincipalKind.VENDOR_USER else "customer",
        vendor_id=uuid.uuid4() if kind is PrincipalKind.VENDOR_USER else None,
        session_id=uuid.uuid4(),
    )
    ttl = timedelta(minutes=-5 if expired else 5)
    return {"Authorization": f"Bearer {issue(claims, str(world.settings.jwt_secret), ttl)}"}


async def test_an_expired_or_bad_customer_token_browses_at_retail_but_a_vendor_token_does_not(
    b2b: B2B,  # noqa: F811
) -> None:
    retail = _prices((await b2b.api.get(LIST, params=FR)).json())
    for headers in (
        _token(b2b, PrincipalKind.CUSTOMER, expired=True),
        _token(b2b, PrincipalKind.ADMIN, expired=True),
        {"Authorization": "Bearer not.a.token"},
        {
            "Authorization": "Bearer "
            + _token(b2b, PrincipalKind.CUSTOMER, expired=False)["Authorization"][-20:]
        },
    ):
        response = await b2b.api.get(LIST, params=FR, headers=headers)
        assert response.status_code == 200, (headers, response.text)
        assert _prices(response.json()) == retail
    # A vendor's credentials are checked: a vendor never gets retail prices by mistake.
    expired = await b2b.api.get(LIST, params=FR, headers=_token(b2b, PrincipalKind.VENDOR_USER, expired=True))
    assert expired.status_code == 401 and expired.json()["code"] == "TOKEN_EXPIRED"
