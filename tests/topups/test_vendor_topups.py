"""A vendor tops up an eSIM it bought, from its wallet: the same order workflow, one bundle, one ICCID."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from tests.b2b.conftest import B2B, VendorHandle
from ttelgo.models import Esim, EsimBundle, Order

FITS = "esim_3GB_7D_FR_V2"
ELSEWHERE = "esim_1GB_7D_GB_V2"


async def _esim(b2b: B2B, vendor: VendorHandle) -> str:
    response = await b2b.order(vendor, wait=30)
    assert response.status_code == 201, response.text
    return response.json()["esims"][0]["iccid"]


async def _topup(b2b: B2B, vendor: VendorHandle, iccid: str, bundle: str = FITS, wait: int = 30):  # type: ignore[no-untyped-def]
    return await b2b.api.post(
        f"/api/v1/vendor/esims/{iccid}/topups",
        params={"wait": wait},
        json={"bundle_code": bundle, "customer_reference": "extra-data"},
        headers={**vendor.headers, "Idempotency-Key": str(uuid.uuid4())},
    )


async def test_a_wallet_topup_completes_within_the_wait_on_the_same_iccid(b2b: B2B) -> None:
    vendor = await b2b.new_vendor(balance=100_000, markup_bps=1000)
    iccid = await _esim(b2b, vendor)
    listed = (
        await b2b.api.get(f"/api/v1/vendor/esims/{iccid}/topups/bundles", headers=vendor.headers)
    ).json()
    offered = next(b for b in listed["items"] if b["code"] == FITS)
    assert ELSEWHERE not in [b["code"] for b in listed["items"]]
    retail = (await b2b.api.get(f"/api/v1/catalogue/bundles/{FITS}")).json()["price"]["amount_minor"]
    assert offered["price"]["amount_minor"] != retail  # the vendor's price, not retail
    before = await b2b.wallet(vendor)

    response = await _topup(b2b, vendor, iccid)
    assert response.status_code == 201, response.text
    topup = response.json()
    assert topup["status"] == "COMPLETED" and topup["kind"] == "TOPUP" and topup["target_iccid"] == iccid
    assert topup["total_minor"] == offered["price"]["amount_minor"]
    assert [e["iccid"] for e in topup["esims"]] == [iccid]
    after = await b2b.wallet(vendor)
    assert (
        before["balance_minor"] - after["balance_minor"] == topup["total_minor"] and after["held_minor"] == 0
    )

    at_supplier = sorted(u.name for u in await b2b.sim.client().get_esim_bundles(iccid))
    assert at_supplier == sorted(["esim_1GB_7D_FR_V2", FITS])
    async with b2b.sessions() as session:
        assert await session.scalar(select(func.count()).where(Esim.iccid == iccid)) == 1
        assert (
            await session.scalar(select(EsimBundle.name).where(EsimBundle.order_id == uuid.UUID(topup["id"])))
            == FITS
        )
    kinds = (await b2b.api.get("/api/v1/vendor/orders", headers=vendor.headers)).json()["items"]
    assert sorted(o["kind"] for o in kinds) == ["ORDER", "TOPUP"]


async def test_a_supplier_refusal_voids_the_hold(b2b: B2B) -> None:
    vendor = await b2b.new_vendor(balance=100_000)
    iccid = await _esim(b2b, vendor)
    before = await b2b.wallet(vendor)
    b2b.sim.faults(**{"POST /orders": {"no_bundles_left": True}})
    response = await _topup(b2b, vendor, iccid)
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "FAILED" and response.json()["esims"] == []
    assert await b2b.wallet(vendor) == before
    async with b2b.sessions() as session:
        assert (
            await session.scalar(
                select(func.count()).where(EsimBundle.order_id == uuid.UUID(response.json()["id"]))
            )
            == 0
        )


async def test_another_vendors_esim_is_not_found_and_a_misfit_is_refused(b2b: B2B) -> None:
    owner, other = await b2b.new_vendor(balance=100_000), await b2b.new_vendor(balance=100_000)
    iccid = await _esim(b2b, owner)
    async with b2b.sessions() as session:
        orders_before = await session.scalar(select(func.count()).select_from(Order))
    listed = await b2b.api.get(f"/api/v1/vendor/esims/{iccid}/topups/bundles", headers=other.headers)
    assert listed.status_code == 404 and listed.json()["code"] == "ESIM_NOT_FOUND"
    bought = await _topup(b2b, other, iccid)
    assert bought.status_code == 404 and bought.json()["code"] == "ESIM_NOT_FOUND"
    misfit = await _topup(b2b, owner, iccid, bundle=ELSEWHERE)
    assert misfit.status_code == 422 and misfit.json()["code"] == "TOPUP_BUNDLE_INCOMPATIBLE"
    async with b2b.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Order)) == orders_before
    assert (await b2b.wallet(owner))["held_minor"] == 0
