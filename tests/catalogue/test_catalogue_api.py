"""The public catalogue API: filters, retail pricing, sorting, paging, caching headers, errors, outages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import create_async_engine
from temporalio.testing import WorkflowEnvironment

from tests.support.esimgo import SimHandle
from tests.support.stack import api_client, stack_settings
from ttelgo.catalogue.config import LAST_SYNCED_AT_KEY
from ttelgo.catalogue.pricing import RETAIL_RULES_KEY
from ttelgo.db import session_factory
from ttelgo.models import CatalogueBundle, SystemConfig


async def _set_config(database_url: str, key: str, value: object) -> None:
    engine = create_async_engine(database_url)
    async with session_factory(engine)() as session, session.begin():
        stmt = insert(SystemConfig).values(key=key, value=value)
        await session.execute(
            stmt.on_conflict_do_update(index_elements=["key"], set_={"value": stmt.excluded.value})
        )
    await engine.dispose()


@pytest.fixture
def synced(synced_template: dict[str, int]) -> dict[str, int]:
    return synced_template


@pytest.fixture
async def api(
    synced_database_url: str, temporal_env: WorkflowEnvironment, esimgo_sim: SimHandle
) -> AsyncIterator[httpx.AsyncClient]:
    settings = stack_settings(synced_database_url, temporal_env.client, esimgo_sim, "unused")
    async with api_client(settings) as client:
        yield client


async def test_country_filter_includes_local_regional_and_global_bundles(api: httpx.AsyncClient) -> None:
    body = (await api.get("/api/v1/catalogue", params={"country": "fr", "page_size": 100})).json()
    items = body["items"]
    assert body["total"] == len(items) > 15
    assert all("FR" in item["country_isos"] for item in items)
    assert {item["scope"] for item in items} == {"LOCAL", "REGIONAL", "GLOBAL"}
    prices = [item["price"]["amount_minor"] for item in items]
    assert prices == sorted(prices)
    meta = body["catalogue"]
    age = (datetime.now(UTC) - datetime.fromisoformat(meta["synced_at"])).total_seconds()
    assert meta["stale"] is False and abs(meta["age_seconds"] - age) <= 5


async def test_retail_price_is_wholesale_plus_default_markup_rounded_to_99(
    api: httpx.AsyncClient, synced: dict[str, int]
) -> None:
    bundle = (await api.get("/api/v1/catalogue/bundles/esim_1GB_7D_FR_V2")).json()
    wholesale = synced["esim_1GB_7D_FR_V2"]
    price = bundle["price"]["amount_minor"]
    assert price % 100 == 99
    assert price * 10_000 >= wholesale * 14_000 > (price - 100) * 10_000  # +40 % then up to the next .99
    assert bundle["price"]["currency"] == "USD"
    assert bundle["price"]["amount"] == f"{price // 100}.{price % 100:02d}"


async def test_pricing_rules_from_system_config(
    synced_database_url: str, temporal_env: WorkflowEnvironment, esimgo_sim: SimHandle, synced: dict[str, int]
) -> None:
    database_url = synced_database_url
    rules = {
        "default_markup_bps": 0,
        "region_markup_bps": {"Europe": 5000},
        "bundle_markup_bps": {"esim_1GB_7D_FR_V2": 10000},
        "rounding": "none",
    }
    await _set_config(database_url, RETAIL_RULES_KEY, rules)
    async with api_client(stack_settings(database_url, temporal_env.client, esimgo_sim, "unused")) as api:
        fr = (await api.get("/api/v1/catalogue/bundles/esim_1GB_7D_FR_V2")).json()
        de = (await api.get("/api/v1/catalogue/bundles/esim_1GB_7D_DE_V2")).json()
        us = (await api.get("/api/v1/catalogue/bundles/esim_1GB_7D_US_V2")).json()
    assert fr["price"]["amount_minor"] == synced["esim_1GB_7D_FR_V2"] * 2
    assert de["price"]["amount_minor"] == -(-synced["esim_1GB_7D_DE_V2"] * 15_000 // 10_000)
    assert us["price"]["amount_minor"] == synced["esim_1GB_7D_US_V2"]


@pytest.mark.parametrize(
    ("params", "check"),
    [
        ({"min_data_gb": 5}, lambda b: b["unlimited"] or b["data_mb"] >= 5000),
        ({"duration": 7}, lambda b: b["duration_days"] == 7),
        ({"unlimited": "true"}, lambda b: b["unlimited"]),
        ({"unlimited": "false"}, lambda b: not b["unlimited"]),
        ({"region": "asia"}, lambda b: "Asia" in b["regions"]),
    ],
)
async def test_filters(api: httpx.AsyncClient, params: dict[str, object], check: object) -> None:
    body = (await api.get("/api/v1/catalogue", params={**params, "page_size": 100})).json()
    assert body["items"], f"{params} matched nothing"
    assert all(check(item) for item in body["items"])  # type: ignore[operator]
    unfiltered = (await api.get("/api/v1/catalogue", params={"page_size": 1})).json()["total"]
    assert body["total"] < unfiltered


async def test_sorting_and_paging(api: httpx.AsyncClient) -> None:
    query = {"country": "DE", "page_size": 100}
    by_price_desc = (await api.get("/api/v1/catalogue", params={**query, "sort": "-price"})).json()["items"]
    prices = [b["price"]["amount_minor"] for b in by_price_desc]
    assert prices == sorted(prices, reverse=True)
    by_data = (await api.get("/api/v1/catalogue", params={**query, "sort": "data"})).json()["items"]
    data = [float("inf") if b["unlimited"] else b["data_mb"] for b in by_data]
    assert data == sorted(data)

    everything = (await api.get("/api/v1/catalogue", params=query)).json()["items"]
    page2 = (await api.get("/api/v1/catalogue", params={**query, "page_size": 5, "page": 2})).json()
    assert page2["items"] == everything[5:10] and page2["page"] == 2 and page2["total"] == len(everything)
    assert (await api.get("/api/v1/catalogue", params={"page_size": 101})).status_code == 422


async def test_etag_and_cache_control(api: httpx.AsyncClient) -> None:
    first = await api.get("/api/v1/catalogue", params={"country": "FR"})
    assert first.headers["Cache-Control"] == "public, max-age=60"
    etag = first.headers["ETag"]
    again = await api.get("/api/v1/catalogue", params={"country": "FR"}, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    other = await api.get("/api/v1/catalogue", params={"country": "DE"})
    assert other.headers["ETag"] != etag


@pytest.mark.parametrize("iso", ["XX", "FRA", "1A", "f"])
async def test_bad_country_code_is_422_problem(api: httpx.AsyncClient, iso: str) -> None:
    for response in (
        await api.get("/api/v1/catalogue", params={"country": iso}),
        await api.get(f"/api/v1/catalogue/countries/{iso}"),
    ):
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "COUNTRY_CODE_INVALID"


async def test_unknown_bundle_is_404_problem(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/v1/catalogue/bundles/esim_NOPE_V2")
    assert response.status_code == 404 and response.json()["code"] == "BUNDLE_NOT_FOUND"


async def test_country_page(api: httpx.AsyncClient) -> None:
    body = (await api.get("/api/v1/catalogue/countries/jp")).json()
    assert body["country"] == {"iso": "JP", "name": "Japan", "region": "Asia"}
    assert body["bundles"] and all("JP" in b["country_isos"] for b in body["bundles"])


async def test_last_copy_is_served_during_a_supplier_outage_with_its_age(
    synced_database_url: str, temporal_env: WorkflowEnvironment, esimgo_sim: SimHandle
) -> None:
    database_url = synced_database_url
    esimgo_sim.down()
    long_ago = datetime.now(UTC) - timedelta(hours=2)
    engine = create_async_engine(database_url)
    async with session_factory(engine)() as session, session.begin():
        await session.execute(update(CatalogueBundle).values(synced_at=long_ago))
    await engine.dispose()
    await _set_config(database_url, LAST_SYNCED_AT_KEY, long_ago.isoformat())
    async with api_client(stack_settings(database_url, temporal_env.client, esimgo_sim, "unused")) as api:
        body = (await api.get("/api/v1/catalogue", params={"country": "FR"})).json()
    assert body["items"], "the stored copy must still be served"
    assert body["catalogue"]["stale"] is True
    assert 7190 <= body["catalogue"]["age_seconds"] <= 7300
