"""A top-up is about the eSIM it tops up: the customer's "eSIMs ready" e-mail, the vendor's
`order.completed` webhook and the admin's order detail all show that eSIM; the admin's eSIM view gives its
row id (the refresh workflow's id in the Temporal UI)."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from tests.b2c.conftest import B2C
from tests.topups.test_customer_topups import FITS, _esim, _topup
from tests.webhooks_out.conftest import Receiver, team_member
from ttelgo.models import Esim, Notification


async def test_a_card_topup_shows_its_esim_in_the_mail_and_to_an_admin(b2c: B2C) -> None:
    customer = await b2c.customer()
    iccid = await _esim(b2c, customer)
    created = await _topup(b2c, customer, iccid)
    assert created.status_code == 201, created.text
    topup = created.json()
    assert (await b2c.pay(topup["payment"]["payment_intent_id"])).status == "succeeded"
    await b2c.wait_for(f"/api/v1/orders/{topup['id']}", customer.headers, "COMPLETED")

    async with b2c.sessions() as session:
        ready = await session.scalar(
            select(Notification).where(Notification.dedupe_key == f"{topup['id']}:esims-ready")
        )
        esim_id = await session.scalar(select(Esim.id).where(Esim.iccid == iccid))
    assert ready is not None and ready.payload["bundle_code"] == FITS
    assert [e["iccid"] for e in ready.payload["esims"]] == [iccid]

    admin = await b2c.admin()
    detail = (await b2c.api.get(f"/api/v1/admin/orders/{topup['id']}", headers=admin)).json()
    assert detail["kind"] == "TOPUP" and [e["iccid"] for e in detail["esims"]] == [iccid]
    qr = await b2c.api.get(detail["esims"][0]["qr_code_url"], headers=admin)
    assert qr.status_code == 200 and qr.headers["content-type"] == "image/png"

    viewed = (await b2c.api.get(f"/api/v1/admin/esims/{iccid}", headers=admin)).json()
    assert viewed["esim_id"] == str(esim_id)
    listed = (await b2c.api.get("/api/v1/admin/esims", params={"iccid": iccid}, headers=admin)).json()
    assert [e["esim_id"] for e in listed["items"]] == [str(esim_id)]
    mine = (await b2c.api.get(f"/api/v1/esims/{iccid}", headers=customer.headers)).json()
    assert "esim_id" not in mine


async def test_a_vendor_topup_completed_webhook_lists_its_esim(b2c: B2C, receiver: Receiver) -> None:
    b2b = await b2c.wallet_world()
    vendor = await b2b.new_vendor(balance=100_000)
    member = await team_member(b2b, vendor)
    put = await b2b.api.put(
        "/api/v1/vendor/webhook", json={"url": receiver.url, "events": ["order.completed"]}, headers=member
    )
    assert put.status_code == 200, put.text
    bought = await b2b.order(vendor)
    assert bought.status_code == 201, bought.text
    [esim] = bought.json()["esims"]
    response = await b2b.api.post(
        f"/api/v1/vendor/esims/{esim['iccid']}/topups",
        params={"wait": 30},
        json={"bundle_code": FITS},
        headers={**vendor.headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert response.status_code == 201 and response.json()["status"] == "COMPLETED", response.text
    topup_id = response.json()["id"]

    await receiver.wait_for(lambda: any(c.json["data"]["order_id"] == topup_id for c in receiver.calls))
    [event] = [c.json for c in receiver.calls if c.json["data"]["order_id"] == topup_id]
    assert event["type"] == "order.completed" and event["data"]["bundle_code"] == FITS
    assert [e["iccid"] for e in event["data"]["esims"]] == [esim["iccid"]]
