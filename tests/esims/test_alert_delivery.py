"""A usage alert is sent even when the run that claimed it died before sending it: hourly housekeeping
sends every alert left unsent for a few minutes, and a repeat of one that did go out is a no-op (one
e-mail, one webhook delivery)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from tests.b2c.conftest import B2C, MailServer
from tests.esims.conftest import GB, vendor_esim
from tests.webhooks_out.conftest import Receiver
from ttelgo.esim_bundles import claim_alerts, ensure_sold_bundles, lock_esim
from ttelgo.models import EsimAlertKind, EsimBundle, EsimBundleAlert, Notification, WebhookDelivery
from workflows.housekeeping import HousekeepingInput, HousekeepingResult, HousekeepingWorkflow


async def _claimed_by_a_dead_run(b2c: B2C, iccid: str) -> uuid.UUID:
    """An 80 % alert claimed (committed with its usage) by a run that then died, an hour ago."""
    async with b2c.sessions() as session, session.begin():
        esim = await lock_esim(session, iccid)
        assert esim is not None
        await ensure_sold_bundles(session, esim)
        bundle = await session.scalar(select(EsimBundle).where(EsimBundle.esim_id == esim.id))
        assert bundle is not None
        bundle.data_total_bytes, bundle.data_remaining_bytes = GB, GB // 10
        [alert] = await claim_alerts(session, bundle.id, [EsimAlertKind.USAGE_80], "esim-usage-dead/run")
        alert.created_at = datetime.now(UTC) - timedelta(hours=1)
        return alert.id


async def _housekeeping(b2c: B2C) -> HousekeepingResult:
    return await b2c.temporal.execute_workflow(
        HousekeepingWorkflow.run,
        HousekeepingInput(
            api_usage_days=90, webhook_event_days=90, notification_days=90, login_failure_window_hours=24
        ),
        id=f"housekeeping-{uuid.uuid4().hex[:8]}",
        task_queue=b2c.settings.temporal_task_queue,
    )


async def _sent_at(b2c: B2C, alert_id: uuid.UUID) -> datetime | None:
    async with b2c.sessions() as session:
        return await session.scalar(select(EsimBundleAlert.sent_at).where(EsimBundleAlert.id == alert_id))


async def _forget_sent(b2c: B2C, alert_id: uuid.UUID) -> None:
    """As if the run sent the alert and died before marking it sent."""
    async with b2c.sessions() as session, session.begin():
        await session.execute(
            update(EsimBundleAlert).where(EsimBundleAlert.id == alert_id).values(sent_at=None)
        )


async def test_an_alert_whose_run_died_is_emailed_once(b2c: B2C, mail_server: MailServer) -> None:
    customer = await b2c.customer()
    [esim] = (await b2c.paid_order(customer))["esims"]
    alert_id = await _claimed_by_a_dead_run(b2c, esim["iccid"])

    def usage_mail() -> list[object]:
        return [m for m in mail_server.messages(customer.email) if "of its data" in m["Subject"]]

    first = await _housekeeping(b2c)
    assert first.alerts_resent == 1 and await _sent_at(b2c, alert_id) is not None
    for _ in range(150):  # its Notification workflow sends it
        if usage_mail():
            break
        await asyncio.sleep(0.2)
    await _forget_sent(b2c, alert_id)
    again = await _housekeeping(b2c)  # it went out already: the outbox's dedupe key makes this a no-op
    assert again.alerts_resent == 1 and await _sent_at(b2c, alert_id) is not None

    async with b2c.sessions() as session:
        rows = list(
            await session.scalars(
                select(Notification).where(Notification.dedupe_key.endswith(f":{alert_id}"))
            )
        )
    assert [r.status.value for r in rows] == ["SENT"]
    assert len(usage_mail()) == 1


async def test_an_alert_whose_run_died_reaches_the_vendor_once(b2c: B2C, receiver: Receiver) -> None:
    _, _, order = await vendor_esim(b2c, receiver)
    [esim] = order["esims"]
    alert_id = await _claimed_by_a_dead_run(b2c, esim["iccid"])

    await _housekeeping(b2c)
    await receiver.wait_for(lambda: len(receiver.answered(200)) >= 1)
    await _forget_sent(b2c, alert_id)
    await _housekeeping(b2c)  # sent already: the same event id, a delivery that ran is not run again

    assert await _sent_at(b2c, alert_id) is not None
    async with b2c.sessions() as session:
        rows = await session.scalars(
            select(WebhookDelivery).where(WebhookDelivery.event_type.startswith("esim."))
        )
        mine = [r for r in rows if r.payload["data"].get("alert_id") == str(alert_id)]
    assert len(mine) == 1 and mine[0].event_type == "esim.usage_threshold"
    assert [c.json["data"]["alert_id"] for c in receiver.calls] == [str(alert_id)]
