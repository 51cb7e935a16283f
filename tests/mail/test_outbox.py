"""The outbox end to end: a paid card order leaves exactly one eSIM-ready message at the local SMTP server,
each row is sent once however often its delivery runs, a message that cannot be sent ends FAILED, and
operators list and resend (audited)."""

from __future__ import annotations

import asyncio
import time
import uuid

from sqlalchemy import select
from temporalio.client import WorkflowExecutionStatus

from activities.contracts import notification_workflow_id
from activities.notifications import NotificationActivities, start_delivery
from tests.b2c.conftest import B2C, DECLINED, MailServer
from ttelgo.mail.render import message_id
from ttelgo.mail.smtp import SmtpMailer
from ttelgo.models import AuditLog, Notification, NotificationChannel, NotificationStatus
from ttelgo.qr import lpa


async def _row(b2c: B2C, **where: object) -> Notification:
    deadline = time.monotonic() + 30
    while True:
        async with b2c.sessions() as session:
            query = select(Notification).filter_by(**where)
            row = await session.scalar(query)
            if row is not None and (
                row.status is not NotificationStatus.QUEUED or time.monotonic() > deadline
            ):
                return row
        assert time.monotonic() < deadline, f"no settled notification {where}"
        await asyncio.sleep(0.2)


async def _finished(b2c: B2C, notification_id: uuid.UUID) -> None:
    handle = b2c.temporal.get_workflow_handle(notification_workflow_id(notification_id))
    await handle.result()
    assert (await handle.describe()).status is WorkflowExecutionStatus.COMPLETED


async def test_paid_card_order_mails_the_esims_once(b2c: B2C, mail_server: MailServer) -> None:
    customer = await b2c.customer()
    done = await b2c.paid_order(customer, quantity=2)
    ready = await _row(b2c, order_id=uuid.UUID(done["id"]), template="esims_ready")
    assert ready.status is NotificationStatus.SENT and ready.attempts == 1 and ready.sent_at is not None
    receipt = await _row(b2c, recipient=customer.email, template="payment_receipt")
    assert receipt.status is NotificationStatus.SENT
    b2c.workflows.append(notification_workflow_id(ready.id))  # TTELGO_RECORD_HISTORIES keeps its history
    await _finished(b2c, ready.id)

    mails = mail_server.messages(to=customer.email)
    assert sorted(m["X-TTelGo-Template"] for m in mails) == ["esims_ready", "payment_receipt"]
    (mail,) = [m for m in mails if m["X-TTelGo-Template"] == "esims_ready"]
    assert mail["Message-ID"].strip() == message_id(ready.id)
    text = mail.get_body(preferencelist=("plain",)).get_content()
    for esim in done["esims"]:
        assert esim["lpa"] in text or lpa(esim["smdp_address"], esim["matching_id"]) in text
    pngs = [p for p in mail.walk() if p.get_content_type() == "image/png"]
    assert len(pngs) == 2 and all(p.get_payload(decode=True).startswith(b"\x89PNG") for p in pngs)

    # Delivery again (the workflow started twice, the activity retried): no second message.
    await start_delivery(b2c.temporal, ready.id, b2c.settings.temporal_task_queue, 60, again=True)
    await _finished(b2c, ready.id)
    sender = NotificationActivities(b2c.sessions, SmtpMailer(b2c.settings))
    await sender.send(ready.id)
    await sender.send(ready.id)
    assert len(mail_server.messages(to=customer.email)) == 2
    assert (await _row(b2c, id=ready.id)).attempts == 1


async def test_declined_then_expired_order_is_told_both(b2c: B2C, mail_server: MailServer) -> None:
    customer = await b2c.customer()
    response = await b2c.order(customer)
    order = response.json()
    await b2c.pay(order["payment"]["payment_intent_id"], DECLINED)
    await b2c.wait_for(f"/api/v1/orders/{order['id']}", customer.headers, "PAYMENT_FAILED")
    await b2c.api.post(f"/api/v1/orders/{order['id']}/cancel", headers=customer.headers)
    await b2c.wait_for(f"/api/v1/orders/{order['id']}", customer.headers, "CANCELED")
    failed = await _row(b2c, recipient=customer.email, template="payment_failed")
    closed = await _row(b2c, recipient=customer.email, template="order_closed")
    assert failed.status is closed.status is NotificationStatus.SENT
    subjects = {m["X-TTelGo-Template"]: m["Subject"] for m in mail_server.messages(to=customer.email)}
    assert set(subjects) == {"payment_failed", "order_closed"}
    assert "was canceled" in subjects["order_closed"]


async def test_unsendable_message_fails_then_an_operator_resends_it(
    b2c: B2C, mail_server: MailServer
) -> None:
    """A row whose message cannot be rendered ends FAILED with its attempt and error; the admin list
    shows it; a resend (audited) queues it again with a new Message-ID."""
    to = f"{uuid.uuid4().hex[:8]}@example.com"
    async with b2c.sessions() as session, session.begin():
        row = Notification(
            dedupe_key=f"test:{uuid.uuid4()}",
            channel=NotificationChannel.EMAIL,
            template="low_balance",
            recipient=to,
            payload={"vendor_name": "Roam", "currency": "EUR"},  # no amounts: cannot be rendered
        )
        session.add(row)
    await start_delivery(b2c.temporal, row.id, b2c.settings.temporal_task_queue, 60)
    await _finished(b2c, row.id)
    failed = await _row(b2c, id=row.id)
    assert failed.status is NotificationStatus.FAILED and failed.attempts == 1
    assert failed.last_error and "available" in failed.last_error
    assert mail_server.messages(to=to) == []

    admin = await b2c.admin()
    listed = await b2c.api.get(
        "/api/v1/admin/notifications", params={"status": "FAILED", "template": "low_balance"}, headers=admin
    )
    assert listed.status_code == 200, listed.text
    assert str(row.id) in [n["id"] for n in listed.json()["items"]]
    assert "payload" not in listed.json()["items"][0]
    assert (
        await b2c.api.get("/api/v1/admin/notifications", params={"status": "nope"}, headers=admin)
    ).status_code == 422

    async with b2c.sessions() as session, session.begin():  # the operator fixes the data behind it
        fixed = await session.get_one(Notification, row.id)
        fixed.payload = {**fixed.payload, "available_minor": 900, "threshold_minor": 5000}
    resent = await b2c.api.post(
        f"/api/v1/admin/notifications/{row.id}/resend", json={"reason": "amounts restored"}, headers=admin
    )
    assert resent.status_code == 202, resent.text
    assert resent.json()["notification"]["status"] == "QUEUED"
    await _finished(b2c, row.id)
    sent = await _row(b2c, id=row.id)
    assert sent.status is NotificationStatus.SENT and sent.attempts == 2
    (mail,) = mail_server.messages(to=to)
    assert mail["Message-ID"].strip() == message_id(row.id, 1)
    async with b2c.sessions() as session:
        audit = await session.scalar(select(AuditLog).where(AuditLog.target_id == str(row.id)))
        assert audit is not None and audit.action == "notification.resend"
        assert audit.before["status"] == "FAILED" and audit.reason == "amounts restored"
    missing = await b2c.api.post(f"/api/v1/admin/notifications/{uuid.uuid4()}/resend", headers=admin)
    assert missing.status_code == 404
    unauthenticated = await b2c.api.get("/api/v1/admin/notifications")
    assert unauthenticated.status_code == 401


async def test_card_refund_mails_the_customer(b2c: B2C, mail_server: MailServer) -> None:
    customer = await b2c.customer()
    done = await b2c.paid_order(customer)
    response = await b2c.api.post(
        f"/api/v1/admin/orders/{done['id']}/refund",
        json={"reason": "customer asked"},
        headers={**await b2c.admin(), "Idempotency-Key": str(uuid.uuid4())},
    )
    assert response.status_code == 201, response.text
    refunded = await _row(b2c, recipient=customer.email, template="refund_succeeded")
    assert refunded.status is NotificationStatus.SENT
    (mail,) = [
        m for m in mail_server.messages(to=customer.email) if m["X-TTelGo-Template"] == "refund_succeeded"
    ]
    assert "Refund of" in mail["Subject"]


async def test_a_completed_topup_mails_the_vendor_a_receipt_once(b2c: B2C, mail_server: MailServer) -> None:
    b2b = await b2c.wallet_world()
    vendor = await b2b.new_vendor()
    contact = (await b2c.api.get(f"/api/v1/admin/vendors/{vendor.id}", headers=await b2c.admin())).json()[
        "contact_email"
    ]
    response = await b2c.api.post(
        "/api/v1/vendor/wallet/topup/intents",
        json={"amount_minor": 5_000, "currency": "USD"},
        headers={**vendor.headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    topup = response.json()
    assert (await b2c.pay(topup["payment"]["payment_intent_id"])).status == "succeeded"
    await b2c.wait_for(
        f"/api/v1/vendor/wallet/topups/{topup['id']}", vendor.headers, "COMPLETED", field="state"
    )

    receipt = await _row(b2c, recipient=contact, template="topup_receipt")

    assert receipt.status is NotificationStatus.SENT and receipt.attempts == 1
    await _finished(b2c, receipt.id)
    (mail,) = mail_server.messages(to=contact)
    assert mail["X-TTelGo-Template"] == "topup_receipt"
    assert "50.00" in mail.get_body(preferencelist=("plain",)).get_content()
