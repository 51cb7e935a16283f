"""A customer tops up an eSIM they bought: by card, through the order workflow, onto the same ICCID."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select, update

from tests.b2c.conftest import B2C, Customer
from ttelgo.models import Esim, EsimBundle, Order, OrderKind, Payment, PaymentStatus

FITS = "esim_3GB_7D_FR_V2"  # the same country as the eSIM's esim_1GB_7D_FR_V2
ELSEWHERE = "esim_1GB_7D_GB_V2"


async def _esim(b2c: B2C, customer: Customer) -> str:
    order = await b2c.paid_order(customer)
    return order["esims"][0]["iccid"]


async def _topup(b2c: B2C, customer: Customer, iccid: str, bundle: str = FITS, key: str | None = None) -> Any:
    response = await b2c.api.post(
        f"/api/v1/esims/{iccid}/topups",
        json={"bundle_code": bundle},
        headers={**customer.headers, "Idempotency-Key": key or str(uuid.uuid4())},
    )
    if response.status_code == 201:
        b2c.workflows.append(f"order-{response.json()['id']}")
    return response


async def _counts(b2c: B2C) -> tuple[int, int]:
    async with b2c.sessions() as session:
        orders = await session.scalar(select(func.count()).select_from(Order))
        payments = await session.scalar(select(func.count()).select_from(Payment))
    return int(orders or 0), int(payments or 0)


async def test_a_card_topup_puts_the_bundle_on_the_same_iccid(b2c: B2C) -> None:
    customer = await b2c.customer()
    iccid = await _esim(b2c, customer)

    listed = await b2c.api.get(
        f"/api/v1/esims/{iccid}/topups/bundles", params={"page_size": 100}, headers=customer.headers
    )
    assert listed.status_code == 200, listed.text
    page = listed.json()
    codes = [b["code"] for b in page["items"]]
    assert FITS in codes and ELSEWHERE not in codes
    assert all(b["country_isos"] == ["FR"] for b in page["items"]) and page["total"] == len(codes) > 1
    prices = [b["price"]["amount_minor"] for b in page["items"]]
    assert prices == sorted(prices)
    retail = (await b2c.api.get(f"/api/v1/catalogue/bundles/{FITS}")).json()["price"]
    assert next(b for b in page["items"] if b["code"] == FITS)["price"] == retail

    created = await _topup(b2c, customer, iccid)
    assert created.status_code == 201, created.text
    topup = created.json()
    assert topup["kind"] == "TOPUP" and topup["target_iccid"] == iccid and topup["quantity"] == 1
    assert topup["status"] == "PAYMENT_PENDING" and topup["total_minor"] == retail["amount_minor"]
    assert topup["payment"]["amount_minor"] == retail["amount_minor"] and topup["payment"]["client_secret"]
    assert created.headers["Location"] == f"/api/v1/orders/{topup['id']}"

    assert (await b2c.pay(topup["payment"]["payment_intent_id"])).status == "succeeded"
    done = await b2c.wait_for(f"/api/v1/orders/{topup['id']}", customer.headers, "COMPLETED")
    assert [e["iccid"] for e in done["esims"]] == [iccid]

    at_supplier = await b2c.sim.client().get_esim_bundles(iccid)
    assert sorted(u.name for u in at_supplier) == sorted(["esim_1GB_7D_FR_V2", FITS])
    async with b2c.sessions() as session:
        assert await session.scalar(select(func.count()).where(Esim.iccid == iccid)) == 1
        esim = await session.scalar(select(Esim).where(Esim.iccid == iccid))
        assert esim is not None and esim.order_id != uuid.UUID(topup["id"])
        bundle = await session.scalar(select(EsimBundle).where(EsimBundle.order_id == uuid.UUID(topup["id"])))
        assert bundle is not None and bundle.esim_id == esim.id and bundle.name == FITS
    assert b2c.sim.stats()["orders"]["transactions"] == 2

    mine = (await b2c.api.get("/api/v1/orders", headers=customer.headers)).json()["items"]
    assert sorted(o["kind"] for o in mine) == ["ORDER", "TOPUP"]
    only = (await b2c.api.get("/api/v1/orders?kind=TOPUP", headers=customer.headers)).json()["items"]
    assert [o["id"] for o in only] == [topup["id"]]
    admin = (await b2c.api.get("/api/v1/admin/orders", headers=await b2c.admin())).json()["items"]
    assert next(o for o in admin if o["id"] == topup["id"])["kind"] == "TOPUP"


async def test_a_supplier_refusal_refunds_the_card(b2c: B2C) -> None:
    customer = await b2c.customer()
    iccid = await _esim(b2c, customer)
    b2c.sim.faults(**{"POST /orders": {"no_bundles_left": True}})
    topup = (await _topup(b2c, customer, iccid)).json()
    await b2c.pay(topup["payment"]["payment_intent_id"])
    refunded = await b2c.wait_for(f"/api/v1/orders/{topup['id']}", customer.headers, "REFUNDED")
    assert refunded["esims"] == [] and refunded["failure_code"]
    async with b2c.sessions() as session:
        payment = await session.scalar(select(Payment).where(Payment.order_id == uuid.UUID(topup["id"])))
        assert payment is not None and payment.status is PaymentStatus.REFUNDED
        assert payment.refunded_minor == topup["total_minor"]
        assert (
            await session.scalar(select(func.count()).where(EsimBundle.order_id == uuid.UUID(topup["id"])))
            == 0
        )
    assert [u.name for u in await b2c.sim.client().get_esim_bundles(iccid)] == ["esim_1GB_7D_FR_V2"]


async def test_an_incompatible_or_unknown_bundle_is_refused_and_starts_nothing(b2c: B2C) -> None:
    customer = await b2c.customer()
    iccid = await _esim(b2c, customer)
    before = await _counts(b2c)
    refused = await _topup(b2c, customer, iccid, bundle=ELSEWHERE)
    assert refused.status_code == 422 and refused.json()["code"] == "TOPUP_BUNDLE_INCOMPATIBLE"
    unknown = await _topup(b2c, customer, iccid, bundle="esim_no_such_bundle")
    assert unknown.status_code == 422 and unknown.json()["code"] == "BUNDLE_UNKNOWN"
    priced = await b2c.api.post(
        f"/api/v1/esims/{iccid}/topups",
        json={"bundle_code": FITS, "amount_minor": 1},
        headers={**customer.headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert priced.status_code == 422
    assert await _counts(b2c) == before
    assert b2c.sim.stats()["orders"]["transactions"] == 1


async def test_a_deleted_or_revoked_profile_takes_no_topup(b2c: B2C) -> None:
    customer = await b2c.customer()
    iccid = await _esim(b2c, customer)
    before = await _counts(b2c)
    async with b2c.sessions() as session, session.begin():
        await session.execute(update(Esim).where(Esim.iccid == iccid).values(profile_status="Deleted"))
    refused = await _topup(b2c, customer, iccid)
    assert refused.status_code == 409 and refused.json()["code"] == "ESIM_NOT_TOPUPABLE"
    assert "deleted" in refused.json()["detail"]
    assert await _counts(b2c) == before


async def test_another_customers_esim_is_not_found_on_every_route(b2c: B2C) -> None:
    alice, mallory = await b2c.customer(), await b2c.customer()
    iccid = await _esim(b2c, alice)
    before = await _counts(b2c)
    listed = await b2c.api.get(f"/api/v1/esims/{iccid}/topups/bundles", headers=mallory.headers)
    assert listed.status_code == 404 and listed.json()["code"] == "ESIM_NOT_FOUND"
    bought = await _topup(b2c, mallory, iccid)
    assert bought.status_code == 404 and bought.json()["code"] == "ESIM_NOT_FOUND"
    vendor = await (await b2c.wallet_world()).new_vendor(balance=100_000)
    for response in (
        await b2c.api.get(f"/api/v1/vendor/esims/{iccid}/topups/bundles", headers=vendor.headers),
        await b2c.api.post(
            f"/api/v1/vendor/esims/{iccid}/topups",
            json={"bundle_code": FITS},
            headers={**vendor.headers, "Idempotency-Key": str(uuid.uuid4())},
        ),
    ):
        assert response.status_code == 404 and response.json()["code"] == "ESIM_NOT_FOUND"
    assert await _counts(b2c) == before


async def test_the_same_key_returns_the_same_topup(b2c: B2C) -> None:
    customer = await b2c.customer()
    iccid = await _esim(b2c, customer)
    key = str(uuid.uuid4())
    first = await _topup(b2c, customer, iccid, key=key)
    second = await _topup(b2c, customer, iccid, key=key)
    assert first.status_code == second.status_code == 201
    assert second.content == first.content
    async with b2c.sessions() as session:
        topups = await session.scalar(
            select(func.count()).where(
                Order.kind == OrderKind.TOPUP, Order.user_id.is_not(None), Order.target_iccid == iccid
            )
        )
        payments = await session.scalar(
            select(func.count()).where(Payment.order_id == uuid.UUID(first.json()["id"]))
        )
    assert topups == 1 and payments == 1
    other = await _topup(b2c, customer, iccid, bundle="esim_5GB_7D_FR_V2", key=key)
    assert other.status_code == 422 and other.json()["code"] == "IDEMPOTENCY_KEY_REUSED"
