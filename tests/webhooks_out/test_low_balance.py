"""`wallet.low_balance`: an order that takes the wallet under the vendor's threshold alerts once (webhook and
e-mail to the vendor's contact); orders that stay under it do not; the admin's threshold change is audited."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from standardwebhooks import Webhook

from activities.contracts import notification_workflow_id
from tests.b2b.conftest import B2B, BUNDLE, VendorHandle
from tests.b2c.conftest import B2C, MailServer
from tests.webhooks_out.conftest import Receiver, team_member
from ttelgo.models import AuditLog, Notification, NotificationStatus, Vendor, WebhookDelivery
from workflows.order import order_workflow_id

THRESHOLD, BALANCE = 1000, 1200


async def _price(b2b: B2B) -> int:
    client = b2b.sim.client()
    try:
        return (await client.get_bundle(BUNDLE)).price_minor
    finally:
        await client.aclose()


async def _completed_order(b2b: B2B, vendor: VendorHandle) -> str:
    response = await b2b.order(vendor)
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "COMPLETED"
    order_id = response.json()["id"]
    await b2b.temporal.get_workflow_handle(order_workflow_id(order_id)).result()  # all it emits, emitted
    return order_id


async def test_crossing_the_threshold_alerts_once(
    b2c: B2C, receiver: Receiver, mail_server: MailServer
) -> None:
    b2b = await b2c.wallet_world()
    vendor = await b2b.new_vendor(balance=BALANCE)  # markup 0: the vendor pays the wholesale price
    price = await _price(b2b)
    assert price > BALANCE - THRESHOLD and 2 * price <= BALANCE, f"the bundle costs {price}"

    patched = await b2b.api.patch(
        f"/api/v1/admin/vendors/{vendor.id}/low-balance",
        json={"threshold_minor": THRESHOLD},
        headers=b2b.admin,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["low_balance_threshold_minor"] == THRESHOLD
    shown = await b2b.api.get(f"/api/v1/admin/vendors/{vendor.id}", headers=b2b.admin)
    assert shown.json()["low_balance_threshold_minor"] == THRESHOLD
    async with b2b.sessions() as session:
        audit = await session.scalar(
            select(AuditLog).where(
                AuditLog.target_id == vendor.id, AuditLog.action == "vendor.low_balance_threshold"
            )
        )
        assert audit is not None and audit.actor_type == "admin"
        assert audit.before["low_balance_threshold_minor"] is None
        assert audit.after["low_balance_threshold_minor"] == THRESHOLD
        contact = (await session.get_one(Vendor, uuid.UUID(vendor.id))).contact_email

    member = await team_member(b2b, vendor)
    put = await b2b.api.put(
        "/api/v1/vendor/webhook", json={"url": receiver.url, "events": ["wallet.low_balance"]}, headers=member
    )
    assert put.status_code == 200, put.text
    secret = put.json()["secret"]

    await _completed_order(b2b, vendor)  # 1200 → under 1000: the crossing
    await receiver.wait_for(lambda: receiver.answered(200))
    [call] = receiver.calls
    event = Webhook(secret).verify(call.body, call.headers)
    assert event["type"] == "wallet.low_balance"
    left = BALANCE - price
    assert event["data"] == {
        "vendor_id": vendor.id,
        "balance_minor": left,
        "available_minor": left,
        "threshold_minor": THRESHOLD,
        "currency": "USD",
    }

    await _completed_order(b2b, vendor)  # still under: no new crossing
    async with b2b.sessions() as session:
        deliveries = await session.scalar(
            select(func.count())
            .select_from(WebhookDelivery)
            .where(
                WebhookDelivery.vendor_id == uuid.UUID(vendor.id),
                WebhookDelivery.event_type == "wallet.low_balance",
            )
        )
        [mail] = list(
            await session.scalars(
                select(Notification).where(
                    Notification.vendor_id == uuid.UUID(vendor.id), Notification.template == "low_balance"
                )
            )
        )
    assert deliveries == 1
    assert mail.recipient == contact
    assert mail.payload["available_minor"] == left and mail.payload["threshold_minor"] == THRESHOLD
    await b2b.temporal.get_workflow_handle(notification_workflow_id(mail.id)).result()
    async with b2b.sessions() as session:
        sent = await session.get_one(Notification, mail.id)
        assert sent.status is NotificationStatus.SENT and sent.attempts == 1
    assert len(mail_server.messages(to=contact)) == 1
    assert len(receiver.calls) == 1


async def test_no_threshold_no_alert(b2c: B2C, receiver: Receiver) -> None:
    b2b = await b2c.wallet_world()
    vendor = await b2b.new_vendor(balance=BALANCE)
    member = await team_member(b2b, vendor)
    put = await b2b.api.put("/api/v1/vendor/webhook", json={"url": receiver.url}, headers=member)
    assert put.status_code == 200, put.text
    await _completed_order(b2b, vendor)
    await receiver.wait_for(lambda: receiver.answered(200))  # order.completed
    async with b2b.sessions() as session:
        types = set(
            await session.scalars(
                select(WebhookDelivery.event_type).where(WebhookDelivery.vendor_id == uuid.UUID(vendor.id))
            )
        )
    assert types == {"order.completed"}
