"""Admin pricing rules (issue 14): a change reprices the catalogue and the next B2C and B2B orders, is
versioned and audited with before/after; stale versions, invalid rules and non-admins change nothing; the
preview prices proposed rules without saving them."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.b2b.conftest import B2B, BUNDLE, b2b  # noqa: F401 (fixture)
from tests.b2c.conftest import B2C, b2c, localstripe  # noqa: F401 (fixtures)
from ttelgo.catalogue.snapshot import CatalogueCache
from ttelgo.models import AuditLog

PRICING = "/api/v1/admin/pricing"
NEW_RULES: dict[str, Any] = {
    "retail": {
        "default_markup_bps": 4000,
        "region_markup_bps": {"Europe": 2000},
        "bundle_markup_bps": {BUNDLE: 10000},
        "rounding": "none",
    },
    "vendor": {"default_markup_bps": 2500},
}


def _ceil_markup(wholesale: int, bps: int) -> int:
    return -(-wholesale * (10_000 + bps) // 10_000)


async def _price(api: httpx.AsyncClient, code: str = BUNDLE) -> int:
    response = await api.get(f"/api/v1/catalogue/bundles/{code}")
    assert response.status_code == 200, response.text
    return int(response.json()["price"]["amount_minor"])


async def _audit_rows(world: B2B | B2C) -> list[AuditLog]:
    async with world.sessions() as session:
        return list(await session.scalars(select(AuditLog).where(AuditLog.action == "pricing.update")))


async def _put(api: httpx.AsyncClient, admin: dict[str, str], **body: Any) -> httpx.Response:
    """NEW_RULES from version 0, or what `body` says instead."""
    return await api.put(
        PRICING, json={**NEW_RULES, "version": 0, "reason": "summer campaign", **body}, headers=admin
    )


async def test_a_change_reprices_the_catalogue_and_the_next_orders_and_is_audited(
    b2c: B2C,  # noqa: F811
    synced_template: dict[str, int],
) -> None:
    admin = await b2c.admin()
    wallets = await b2c.wallet_world()
    vendor = await wallets.new_vendor(balance=1_000_000, markup_bps=None)  # on the platform default
    wholesale = synced_template[BUNDLE]
    # Another API process: its cache checks the database on every call here (every 5 s in production).
    elsewhere = CatalogueCache(b2c.sessions, check_interval_s=0)
    assert (await elsewhere.get()).by_code[BUNDLE].price_minor == await _price(b2c.api)
    first = await b2c.api.get(PRICING, headers=admin)
    assert first.status_code == 200, first.text
    before = first.json()
    assert before["version"] == 0 and before["updated_at"] is None
    assert before["retail"]["default_markup_bps"] == 4000 and before["vendor"]["default_markup_bps"] == 1500
    old_b2b = await wallets.order(vendor)
    assert old_b2b.status_code == 201, old_b2b.text
    assert old_b2b.json()["unit_price_minor"] == _ceil_markup(wholesale, 1500)

    changed = await _put(b2c.api, admin)

    assert changed.status_code == 200, changed.text
    assert changed.json()["version"] == 1 and changed.json()["updated_by"].startswith("admin:")
    assert changed.json()["retail"] == NEW_RULES["retail"]
    assert await _price(b2c.api) == wholesale * 2  # the bundle's own markup, no rounding
    assert (await elsewhere.get()).by_code[BUNDLE].price_minor == wholesale * 2
    customer = await b2c.customer()
    order = await b2c.order(customer)
    assert order.status_code == 201, order.text
    assert order.json()["unit_price_minor"] == order.json()["total_minor"] == wholesale * 2
    intent = await b2c.stripe.retrieve_intent(order.json()["payment"]["payment_intent_id"])
    assert intent.amount_minor == wholesale * 2
    b2b_order = await wallets.order(vendor)
    assert b2b_order.status_code == 201, b2b_order.text
    assert b2b_order.json()["unit_price_minor"] == _ceil_markup(wholesale, 2500)

    [row] = await _audit_rows(b2c)
    assert row.target_type == "pricing" and row.target_id == "1"
    assert f"{row.actor_type}:{row.actor_id}" == changed.json()["updated_by"]
    assert row.reason == "summer campaign"
    assert row.before == {"version": 0, "retail": before["retail"], "vendor": before["vendor"]}
    assert row.after == {"version": 1, **NEW_RULES}
    assert (await b2c.api.get(PRICING, headers=admin)).json() == changed.json()


async def test_a_stale_version_is_409_and_changes_nothing(b2b: B2B) -> None:  # noqa: F811
    assert (await _put(b2b.api, b2b.admin)).status_code == 200
    price = await _price(b2b.api)
    other = {"retail": {"default_markup_bps": 100, "rounding": "none"}, "vendor": {"default_markup_bps": 0}}

    for version in (0, 2):
        stale = await _put(b2b.api, b2b.admin, version=version, **other)
        assert stale.status_code == 409, stale.text
        assert stale.json()["code"] == "CONFLICT" and stale.json()["current_version"] == 1

    now = (await b2b.api.get(PRICING, headers=b2b.admin)).json()
    assert now["version"] == 1 and now["retail"] == NEW_RULES["retail"]
    assert await _price(b2b.api) == price
    assert len(await _audit_rows(b2b)) == 1


async def test_of_two_changes_from_the_same_version_one_wins(b2b: B2B) -> None:  # noqa: F811
    other = {"retail": {"default_markup_bps": 100}, "vendor": {"default_markup_bps": 0}}

    answers = await asyncio.gather(_put(b2b.api, b2b.admin), _put(b2b.api, b2b.admin, **other))

    assert sorted(answer.status_code for answer in answers) == [200, 409]
    assert (await b2b.api.get(PRICING, headers=b2b.admin)).json()["version"] == 1
    assert len(await _audit_rows(b2b)) == 1


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"retail": {"default_markup_bps": -1}}, "default_markup_bps"),
        ({"retail": {"default_markup_bps": 100_001}}, "default_markup_bps"),
        ({"vendor": {"default_markup_bps": 10**12}}, "default_markup_bps"),
        ({"retail": {"bundle_markup_bps": {BUNDLE: 200_000}}}, BUNDLE),
        ({"retail": {"rounding": "bankers"}}, "rounding"),
        ({"retail": {"default_markup_bps_typo": 10}}, "default_markup_bps_typo"),
        ({"retail": {"region_markup_bps": {"Europe": 1000, "Narnia": 1000}}}, "Narnia"),
        ({"retail": {"bundle_markup_bps": {"esim_NOPE_V2": 1000}}}, "esim_NOPE_V2"),
        ({"reason": ""}, "reason"),
        ({"version": -1}, "version"),
    ],
)
async def test_invalid_rules_are_422_and_change_nothing(
    b2b: B2B,  # noqa: F811
    change: dict[str, Any],
    where: str,
) -> None:
    price = await _price(b2b.api)

    refused = await _put(b2b.api, b2b.admin, **change)

    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "VALIDATION_ERROR"
    assert any(where in error["location"] for error in refused.json()["errors"]), refused.json()
    assert (await b2b.api.get(PRICING, headers=b2b.admin)).json()["version"] == 0
    assert await _price(b2b.api) == price
    assert await _audit_rows(b2b) == []


async def test_non_admins_are_refused(b2b: B2B) -> None:  # noqa: F811
    customer = await b2b.api.post(
        "/api/v1/auth/register",
        json={"email": f"{uuid.uuid4().hex[:10]}@example.com", "password": "a long enough password"},
    )
    vendor = await b2b.new_vendor()
    member = {"email": f"{uuid.uuid4().hex[:10]}@example.com", "password": "a long enough password"}
    added = await b2b.api.post(
        f"/api/v1/admin/vendors/{vendor.id}/users", json={**member, "role": "owner"}, headers=b2b.admin
    )
    assert added.status_code == 201, added.text
    login = await b2b.api.post("/api/v1/vendor/auth/login", json=member)
    callers = {
        "customer": {"Authorization": f"Bearer {customer.json()['access_token']}"},
        "vendor member": {"Authorization": f"Bearer {login.json()['access_token']}"},
    }
    body = {**NEW_RULES, "version": 0, "reason": "not mine to change"}
    for who, headers in callers.items():
        for response in (
            await b2b.api.get(PRICING, headers=headers),
            await b2b.api.put(PRICING, json=body, headers=headers),
            await b2b.api.post(f"{PRICING}/preview", json=NEW_RULES, headers=headers),
        ):
            assert response.status_code == 403, (who, response.text)
            assert response.json()["code"] == "FORBIDDEN"
    for response in (
        await b2b.api.put(PRICING, json=body, headers=vendor.headers),
        await b2b.api.put(PRICING, json=body),
    ):
        assert response.status_code == 401, response.text
    assert (await b2b.api.get(PRICING, headers=b2b.admin)).json()["version"] == 0
    assert await _audit_rows(b2b) == []


async def test_preview_prices_proposed_rules_and_saves_nothing(
    b2b: B2B,  # noqa: F811
    synced_template: dict[str, int],
) -> None:
    price = await _price(b2b.api)
    de = "esim_1GB_7D_DE_V2"

    named = await b2b.api.post(
        f"{PRICING}/preview", json={**NEW_RULES, "bundle_codes": [BUNDLE, de]}, headers=b2b.admin
    )

    assert named.status_code == 200, named.text
    assert named.json()["version"] == 0
    items = {item["code"]: item for item in named.json()["items"]}
    assert list(items) == [BUNDLE, de]
    fr = items[BUNDLE]
    assert fr["wholesale_minor"] == synced_template[BUNDLE]
    assert fr["retail_minor"] == price
    assert fr["proposed_retail_minor"] == synced_template[BUNDLE] * 2
    assert fr["vendor_minor"] == _ceil_markup(synced_template[BUNDLE], 1500)
    assert fr["proposed_vendor_minor"] == _ceil_markup(synced_template[BUNDLE], 2500)
    assert items[de]["proposed_retail_minor"] == _ceil_markup(synced_template[de], 2000)  # Europe

    sample = await b2b.api.post(f"{PRICING}/preview", json=NEW_RULES, headers=b2b.admin)
    assert sample.status_code == 200, sample.text
    codes = [item["code"] for item in sample.json()["items"]]
    assert codes[0] == BUNDLE and 1 < len(codes) <= 25 and len(set(codes)) == len(codes)

    unknown = await b2b.api.post(
        f"{PRICING}/preview", json={**NEW_RULES, "bundle_codes": ["esim_NOPE_V2"]}, headers=b2b.admin
    )
    assert unknown.status_code == 422 and unknown.json()["code"] == "BUNDLE_UNKNOWN"
    assert (await b2b.api.get(PRICING, headers=b2b.admin)).json()["version"] == 0
    assert await _price(b2b.api) == price
    assert await _audit_rows(b2b) == []
