"""Usage alerts: crossing 80 % and 100 % of a bundle's data, and the day before it expires, each produce one
message per bundle and kind (the customer's e-mail, or the vendor's webhook), whatever the order and
repetition of the callbacks that report it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from sqlalchemy import func, select
from temporalio.client import WorkflowExecutionStatus

from tests.b2c.conftest import B2C, MailServer
from tests.esims.conftest import GB, post_callback, record_history, usage_callback, vendor_esim
from tests.webhooks_out.conftest import Receiver
from ttelgo.models import Esim, EsimBundle, EsimBundleAlert, Notification, WebhookDelivery, WebhookEvent

# Reports of one bundle as eSIM Go may deliver them: late, out of order, repeated (the same bytes, and the
# same usage in another alert type).
REMAINING = (0, 150_000_000, 0, 100_000_000, 500_000_000, 150_000_000)


async def _eventually(check: Callable[[], Awaitable[bool]], within_s: float = 30) -> None:
    deadline = time.monotonic() + within_s
    while not await check():
        assert time.monotonic() < deadline, "not reached in time"
        await asyncio.sleep(0.2)


async def _report_usage(b2c: B2C, iccid: str, reference: str) -> None:
    bodies = [usage_callback(iccid, left, reference=reference) for left in REMAINING]
    bodies.append(usage_callback(iccid, 0, reference=reference, alert="LowBalance"))
    await asyncio.gather(*(post_callback(b2c.api, body) for body in bodies))

    async def all_applied() -> bool:
        async with b2c.sessions() as session:
            pending = await session.scalar(
                select(func.count()).select_from(WebhookEvent).where(WebhookEvent.processed_at.is_(None))
            )
            return pending == 0

    await _eventually(all_applied)


async def _alerts(b2c: B2C, iccid: str) -> list[str]:
    async with b2c.sessions() as session:
        kinds = await session.scalars(
            select(EsimBundleAlert.kind)
            .join(EsimBundle, EsimBundle.id == EsimBundleAlert.bundle_id)
            .join(Esim, Esim.id == EsimBundle.esim_id)
            .where(Esim.iccid == iccid)
        )
        return sorted(k.value for k in kinds)


async def _reference(b2c: B2C, path: str, headers: dict[str, str]) -> str:
    """The assignment reference eSIM Go gave the bundle (a read stores it)."""
    [bundle] = (await b2c.api.get(path, headers=headers)).json()["bundles"]
    assert bundle["reference"]
    return str(bundle["reference"])


async def test_a_customer_is_emailed_once_per_threshold(b2c: B2C, mail_server: MailServer) -> None:
    customer = await b2c.customer()
    [esim] = (await b2c.paid_order(customer))["esims"]
    reference = await _reference(b2c, f"/api/v1/esims/{esim['iccid']}", customer.headers)

    await _report_usage(b2c, esim["iccid"], reference)
    await _report_usage(b2c, esim["iccid"], reference)  # all of it again, later

    assert await _alerts(b2c, esim["iccid"]) == ["USAGE_100", "USAGE_80"]

    def usage_mail() -> list[object]:
        return [m for m in mail_server.messages(customer.email) if "of its data" in m["Subject"]]

    async def two_sent() -> bool:
        return len(usage_mail()) >= 2

    await _eventually(two_sent)
    async with b2c.sessions() as session:
        rows = list(await session.scalars(select(Notification).where(Notification.template == "esim_usage")))
    assert len(rows) == 2 and {r.recipient for r in rows} == {customer.email}
    assert {r.payload["threshold_percent"] for r in rows} == {80, 100}
    assert len(usage_mail()) == 2
    view = (await b2c.api.get(f"/api/v1/esims/{esim['iccid']}", headers=customer.headers)).json()
    assert view["bundles"][0]["data_used_percent"] == 100.0 and view["bundles"][0]["state"] == "depleted"


async def test_a_vendor_gets_one_webhook_per_threshold(b2c: B2C, receiver: Receiver) -> None:
    _, vendor, order = await vendor_esim(b2c, receiver)
    [esim] = order["esims"]
    reference = await _reference(b2c, f"/api/v1/vendor/esims/{esim['iccid']}", vendor.headers)

    await _report_usage(b2c, esim["iccid"], reference)
    await _report_usage(b2c, esim["iccid"], reference)

    await receiver.wait_for(lambda: len(receiver.answered(200)) >= 2)
    async with b2c.sessions() as session:
        rows = list(
            await session.scalars(
                select(WebhookDelivery).where(WebhookDelivery.event_type == "esim.usage_threshold")
            )
        )
    assert len(rows) == 2 and len({r.event_id for r in rows}) == 2
    async with b2c.sessions() as session:
        emitters = await session.scalars(select(EsimBundleAlert.emitted_by))
        await record_history(b2c, next(iter(emitters)).split("/")[0], "esim_usage_alerts")
    events = [call.json for call in receiver.calls]
    assert sorted(e["data"]["threshold_percent"] for e in events) == [80, 100]
    assert {e["data"]["iccid"] for e in events} == {esim["iccid"]}
    assert {e["data"]["customer_reference"] for e in events} == {order["customer_reference"]}
    assert all(e["type"] == "esim.usage_threshold" for e in events)
    assert len(receiver.calls) == 2


async def test_the_day_before_expiry_is_announced_once(b2c: B2C, receiver: Receiver) -> None:
    _, _, order = await vendor_esim(b2c, receiver)
    [esim] = order["esims"]
    b2c.sim.admin.put(
        "/callback-url", json={"url": f"{b2c.api_base}/api/v1/webhooks/esimgo"}
    ).raise_for_status()
    # The 7-day bundle starts (at its first use) 6 days minus 4 seconds in the simulator's past: it expires
    # a day and 4 seconds from now, so the notice is due in 4 seconds.
    b2c.sim.admin.put("/clock", json={"offset_seconds": -(6 * 86_400 - 4)}).raise_for_status()
    for _ in range(2):
        used = await asyncio.to_thread(
            b2c.sim.admin.post, f"/esims/{esim['iccid']}/usage", json={"bytes": GB // 100}
        )
        assert used.status_code == 200, used.text

    await receiver.wait_for(lambda: any(c.json["type"] == "esim.expiring" for c in receiver.calls))
    async with b2c.sessions() as session:
        bundle = await session.scalar(
            select(EsimBundle).join(Esim, Esim.id == EsimBundle.esim_id).where(Esim.iccid == esim["iccid"])
        )
        assert bundle is not None and bundle.expires_at is not None
    watch = b2c.temporal.get_workflow_handle(f"esim-expiry-{bundle.id}")
    assert await watch.result() == "notified"  # a durable timer, visible in the Temporal UI
    await record_history(b2c, watch.id, "esim_expiry_notified")

    # More usage, reporting the same expiry: once it is applied and the usage runs it started (and the
    # bundle's expiry watch) have ended, there is still one notice (one delivery, one received call).
    left = bundle.data_remaining_bytes
    assert left is not None
    since = datetime.now(UTC).isoformat()
    await asyncio.to_thread(b2c.sim.admin.post, f"/esims/{esim['iccid']}/usage", json={"bytes": GB // 2})

    async def applied() -> bool:
        async with b2c.sessions() as session:
            now_left = await session.scalar(
                select(EsimBundle.data_remaining_bytes).where(EsimBundle.id == bundle.id)
            )
        return now_left is not None and now_left < left

    async def usage_runs(query: str) -> int:
        # Only the runs this report started: other tests leave expiry timers running on the server.
        counted = await b2c.temporal.count_workflows(
            f"WorkflowType = 'EsimUsage' AND StartTime > '{since}'{query}"
        )
        return counted.count

    async def ran() -> bool:
        return await usage_runs("") >= 1

    async def runs_ended() -> bool:
        watch_done = (await watch.describe()).status is not WorkflowExecutionStatus.RUNNING
        return watch_done and await usage_runs(" AND ExecutionStatus = 'Running'") == 0

    await _eventually(applied)
    await _eventually(ran)
    await _eventually(runs_ended)
    async with b2c.sessions() as session:
        deliveries = await session.scalar(
            select(func.count())
            .select_from(WebhookDelivery)
            .where(
                WebhookDelivery.event_type == "esim.expiring",
                WebhookDelivery.payload["data"]["iccid"].astext == esim["iccid"],
            )
        )
    assert deliveries == 1
    expiring = [c for c in receiver.calls if c.json["type"] == "esim.expiring"]
    assert len(expiring) == 1
    data = expiring[0].json["data"]
    assert data["iccid"] == esim["iccid"] and data["kind"] == "EXPIRING"
    assert data["expires_at"] == bundle.expires_at.isoformat()
    assert await _alerts(b2c, esim["iccid"]) == ["EXPIRING"]
