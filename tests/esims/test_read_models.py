"""eSIM read models: each audience sees its own eSIMs only (another tenant's ICCID is a 404), with install
details, the profile state and every bundle's usage; admins find any eSIM by what they know of it."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from tests.b2c.conftest import B2C
from tests.esims.conftest import vendor_esim
from ttelgo.models import Order

UNKNOWN_ICCID = "8910300000000000000"


def _not_found(response: object) -> None:
    assert response.status_code == 404, response.text  # type: ignore[attr-defined]
    assert response.json()["code"] == "ESIM_NOT_FOUND"  # type: ignore[attr-defined]


async def test_every_route_shows_only_the_callers_own_esims(b2c: B2C) -> None:
    alice, bob = await b2c.customer(), await b2c.customer()
    card_order = await b2c.paid_order(alice)
    [mine] = card_order["esims"]
    b2b, vendor, wallet_order = await vendor_esim(b2c)
    other_vendor = await b2b.new_vendor()
    [theirs] = wallet_order["esims"]
    admin = await b2c.admin()

    # Customers: my list and my eSIM; the vendor's eSIM and an unknown one look alike.
    listed = (await b2c.api.get("/api/v1/esims", headers=alice.headers)).json()
    assert [e["iccid"] for e in listed["items"]] == [mine["iccid"]] and listed["total"] == 1
    detail = await b2c.api.get(f"/api/v1/esims/{mine['iccid']}", headers=alice.headers)
    assert detail.status_code == 200, detail.text
    for iccid in (theirs["iccid"], UNKNOWN_ICCID):
        _not_found(await b2c.api.get(f"/api/v1/esims/{iccid}", headers=alice.headers))
    _not_found(await b2c.api.get(f"/api/v1/esims/{mine['iccid']}", headers=bob.headers))
    assert (await b2c.api.get("/api/v1/esims", headers=bob.headers)).json()["items"] == []

    # Vendors: the same rule.
    listed = (await b2c.api.get("/api/v1/vendor/esims", headers=vendor.headers)).json()
    assert [e["iccid"] for e in listed["items"]] == [theirs["iccid"]]
    assert (await b2c.api.get(f"/api/v1/vendor/esims/{theirs['iccid']}", headers=vendor.headers)).is_success
    for iccid in (mine["iccid"], UNKNOWN_ICCID):
        _not_found(await b2c.api.get(f"/api/v1/vendor/esims/{iccid}", headers=vendor.headers))
    _not_found(await b2c.api.get(f"/api/v1/vendor/esims/{theirs['iccid']}", headers=other_vendor.headers))
    assert (await b2c.api.get("/api/v1/vendor/esims", headers=other_vendor.headers)).json()["total"] == 0

    # Admins see everything; nobody else reaches the admin routes, nor the other audience's.
    everything = (await b2c.api.get("/api/v1/admin/esims", headers=admin)).json()
    assert {e["iccid"] for e in everything["items"]} == {mine["iccid"], theirs["iccid"]}
    _not_found(await b2c.api.get(f"/api/v1/admin/esims/{UNKNOWN_ICCID}", headers=admin))
    for path in ("/api/v1/admin/esims", f"/api/v1/admin/esims/{mine['iccid']}"):
        for headers in (alice.headers, vendor.headers, {}):
            assert (await b2c.api.get(path, headers=headers)).status_code in (401, 403)
    assert (await b2c.api.get("/api/v1/vendor/esims", headers=alice.headers)).status_code in (401, 403)
    assert (await b2c.api.get("/api/v1/esims", headers=vendor.headers)).status_code in (401, 403)
    bad = await b2c.api.get("/api/v1/esims/not-an-iccid", headers=alice.headers)
    assert bad.status_code == 422


async def test_the_view_has_install_details_profile_state_and_every_bundle(b2c: B2C) -> None:
    customer = await b2c.customer()
    order = await b2c.paid_order(customer)
    [esim] = order["esims"]
    view = (await b2c.api.get(f"/api/v1/esims/{esim['iccid']}", headers=customer.headers)).json()
    assert view["install"] == esim  # SM-DP+ address, matching id, LPA string and QR link, as on the order
    assert view["order_id"] == order["id"] and view["channel"] == "B2C"
    assert view["profile_status"] == "released" and view["status"] == "RELEASED"
    [bundle] = view["bundles"]
    assert bundle["name"] == order["bundle_code"] and bundle["order_id"] == order["id"]
    assert bundle["state"] == "queued" and bundle["reference"]  # as eSIM Go reported it
    assert bundle["data_total_mb"] == 1000 and bundle["data_used_percent"] == 0.0
    assert bundle["data_remaining_mb"] == 1000 and bundle["unlimited"] is False
    assert view["refreshed_at"] is not None and view["stale"] is False
    qr = await b2c.api.get(view["install"]["qr_code_url"], headers=customer.headers)
    assert qr.status_code == 200 and qr.content.startswith(b"\x89PNG")


async def test_vendor_filters_and_admin_search(b2c: B2C) -> None:
    b2b, vendor, first = await vendor_esim(b2c)
    second = await b2b.order(vendor, customer_reference="booking-2")
    assert second.status_code == 201, second.text
    [a], [b] = first["esims"], second.json()["esims"]

    async def vendor_finds(**params: object) -> list[str]:
        page = await b2c.api.get("/api/v1/vendor/esims", params=params, headers=vendor.headers)
        assert page.status_code == 200, page.text
        return [e["iccid"] for e in page.json()["items"]]

    assert await vendor_finds() == [b["iccid"], a["iccid"]]  # newest first
    assert await vendor_finds(order_id=first["id"]) == [a["iccid"]]
    assert await vendor_finds(customer_reference="booking-2") == [b["iccid"]]
    assert await vendor_finds(customer_reference="nobody") == []
    assert await vendor_finds(profile_status="released") == []  # neither was read from eSIM Go yet
    assert await vendor_finds(bundle_state="processing") == [b["iccid"], a["iccid"]]
    await b2c.api.get(f"/api/v1/vendor/esims/{a['iccid']}", headers=vendor.headers)  # a read refreshes it
    assert await vendor_finds(profile_status="released") == [a["iccid"]]
    assert await vendor_finds(bundle_state="queued") == [a["iccid"]]
    assert (
        await b2c.api.get("/api/v1/vendor/esims?bundle_state=bogus", headers=vendor.headers)
    ).status_code == 422

    customer = await b2c.customer()
    card = await b2c.paid_order(customer)
    [c] = card["esims"]
    admin = await b2c.admin()

    async def admin_finds(**params: object) -> list[str]:
        page = await b2c.api.get("/api/v1/admin/esims", params=params, headers=admin)
        assert page.status_code == 200, page.text
        return sorted(e["iccid"] for e in page.json()["items"])

    async with b2c.sessions() as session:
        supplier_ref = await session.scalar(
            select(Order.supplier_order_reference).where(Order.id == uuid.UUID(card["id"]))
        )
    assert await admin_finds(iccid=c["iccid"]) == [c["iccid"]]
    assert await admin_finds(order_id=second.json()["id"]) == [b["iccid"]]
    assert await admin_finds(vendor_id=vendor.id) == sorted([a["iccid"], b["iccid"]])
    assert await admin_finds(customer_email=customer.email.upper()) == [c["iccid"]]
    assert await admin_finds(customer_reference="booking-2") == [b["iccid"]]
    assert await admin_finds(supplier_reference=supplier_ref) == [c["iccid"]]
    detail = (await b2c.api.get(f"/api/v1/admin/esims/{c['iccid']}", headers=admin)).json()
    assert (
        detail["supplier_order_reference"] == supplier_ref
        and detail["user_id"]
        and detail["vendor_id"] is None
    )
