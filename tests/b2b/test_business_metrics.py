"""Business metrics: orders, money and the supplier balance on the worker's Prometheus port; inbound
webhooks and the backlogs on the API's /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select
from temporalio.client import ScheduleActionStartWorkflow
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import RPCError
from temporalio.testing import ActivityEnvironment

import worker
from activities.contracts import OrderInput, StatusChange, SupplierBalance, SupplierBalanceCheck
from activities.orders import OrderActivities
from tests.b2b.conftest import B2B, BUNDLE
from tests.support.stack import stop_worker_processes
from tests.webhooks.test_esimgo_callbacks import callback, sign
from ttelgo.models import (
    Channel,
    DeliveryStatus,
    Notification,
    NotificationChannel,
    NotificationStatus,
    Order,
    OrderStatus,
    WebhookDelivery,
    WebhookEvent,
)
from ttelgo.sandbox.processes import free_port
from ttelgo.settings import Settings
from workflows.esim_usage import usage_workflow_id
from workflows.supplier_balance import SCHEDULE_ID as BALANCE_SCHEDULE
from workflows.supplier_balance import SupplierBalanceInput, SupplierBalanceWorkflow

OWN_WORKER = {"worker": False}  # the test runs worker.run itself, with its metrics port
WEBHOOK_SECRET = "whsec_metrics_test_0123456789abcdef"


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the series `name` whose labels include `labels` (summed if several), or None."""
    values = [
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and labels.items() <= s.labels.items()
    ]
    return sum(values) if values else None


async def scrape(port: int) -> str:
    async with httpx.AsyncClient() as http:
        return (await http.get(f"http://127.0.0.1:{port}/metrics")).text


@contextlib.asynccontextmanager
async def worker_process_in_loop(settings: Settings, b2b: B2B) -> AsyncIterator[int]:
    """`worker.run` (its own Temporal runtime, so its own metrics port) on the test's task queue, once it
    polls and has made its schedules."""
    port = free_port()
    settings = settings.model_copy(update={"worker_metrics_port": port})
    with contextlib.suppress(RPCError):  # another test's worker may have left one on the shared server
        await b2b.temporal.get_schedule_handle(BALANCE_SCHEDULE).delete()
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(settings, stop))
    try:
        async with asyncio.timeout(30):
            while True:
                assert not running.done(), running.exception()
                with contextlib.suppress(RPCError):
                    await b2b.temporal.get_schedule_handle(BALANCE_SCHEDULE).describe()
                    break
                await asyncio.sleep(0.1)
        yield port
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)
        await stop_worker_processes(b2b.temporal)


@pytest.mark.parametrize("b2b", [OWN_WORKER], indirect=True)
async def test_a_completed_order_shows_on_the_worker_and_api_metrics(b2b: B2B) -> None:
    vendor = await b2b.new_vendor(balance=100_000)
    async with worker_process_in_loop(b2b.settings, b2b) as port:
        placed = await b2b.order(vendor, quantity=2)
        assert placed.status_code == 201 and placed.json()["status"] == "COMPLETED", placed.text
        metrics = await scrape(port)
    async with b2b.sessions() as session:
        order = await session.scalar(select(Order).where(Order.id == uuid.UUID(placed.json()["id"])))
    assert order is not None and order.wholesale_cost_minor
    b2b_completed = {"channel": "B2B", "status": "COMPLETED"}
    money = {"channel": "B2B", "currency": order.currency}
    assert sample(metrics, "ttelgo_orders_finished_total", **b2b_completed) == 1
    assert sample(metrics, "ttelgo_revenue_minor_total", **money) == order.total_minor
    assert sample(metrics, "ttelgo_supplier_cost_minor_total", **money) == order.wholesale_cost_minor
    assert sample(metrics, "ttelgo_order_completion_seconds_count", channel="B2B") == 1
    assert sample(metrics, "ttelgo_order_completion_seconds_bucket", channel="B2B", le="+Inf") == 1
    # The Temporal SDK's own metrics are on the same port, with Prometheus' counter suffix.
    assert sample(metrics, "temporal_workflow_completed_total") is not None

    api_metrics = (await b2b.api.get("/metrics")).text
    assert sample(api_metrics, "http_requests_total", route="/api/v1/vendor/orders", status="201") == 1
    assert sample(api_metrics, "ttelgo_notifications_queued", channel="EMAIL") is not None


async def test_an_order_is_counted_when_it_reaches_its_final_status_and_not_again_on_a_retry(
    b2b: B2B,
) -> None:
    vendor = await b2b.new_vendor()
    port = free_port()
    prometheus = PrometheusConfig(bind_address=f"127.0.0.1:{port}", counters_total_suffix=True)
    runtime = Runtime(telemetry=TelemetryConfig(metrics=prometheus))
    env = ActivityEnvironment()
    env.metric_meter = runtime.metric_meter
    orders = OrderActivities(b2b.sessions)
    order_id = uuid.uuid4()
    await env.run(
        orders.create_record,
        OrderInput(
            order_id=order_id,
            workflow_id=f"order-{order_id}",
            channel=Channel.B2B,
            vendor_id=uuid.UUID(vendor.id),
            bundle_code=BUNDLE,
            quantity=1,
            unit_price_minor=500,
            currency="USD",
            wholesale_unit_minor=300,
            supplier_task_queue="unused",
        ),
    )
    for status in (OrderStatus.PROVISIONING, OrderStatus.FAILED, OrderStatus.FAILED):  # the last: a retry
        await env.run(orders.set_status, StatusChange(order_id=order_id, status=status))
    metrics = await scrape(port)
    assert sample(metrics, "ttelgo_orders_finished_total", channel="B2B", status="FAILED") == 1
    assert sample(metrics, "ttelgo_orders_finished_total", status="PROVISIONING") is None
    assert sample(metrics, "ttelgo_revenue_minor_total") is None  # a failed order sold nothing


@pytest.mark.parametrize(
    "b2b", [{**OWN_WORKER, "settings": {"supplier_low_balance_minor": 50_000}}], indirect=True
)
async def test_the_balance_schedule_sets_the_gauge_and_warns_when_the_balance_is_low(
    b2b: B2B, caplog: pytest.LogCaptureFixture
) -> None:
    b2b.sim.admin.put("/organisation/balance", json={"balance": "123.45"}).raise_for_status()
    async with worker_process_in_loop(b2b.settings, b2b) as port:
        described = await b2b.temporal.get_schedule_handle(BALANCE_SCHEDULE).describe()
        action = described.schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow) and action.workflow == "SupplierBalance"
        [scheduled] = await b2b.temporal.data_converter.decode(action.args)
        assert scheduled["check"] == {"low_balance_minor": 50_000}
        assert scheduled["supplier_task_queue"] == b2b.settings.esimgo_task_queue
        assert [i.every for i in described.schedule.spec.intervals] == [timedelta(minutes=15)]

        async def check(balance: str, record_as: str | None = None) -> tuple[SupplierBalance, str]:
            b2b.sim.admin.put("/organisation/balance", json={"balance": balance}).raise_for_status()
            handle = await b2b.temporal.start_workflow(
                SupplierBalanceWorkflow.run,
                SupplierBalanceInput(
                    check=SupplierBalanceCheck(low_balance_minor=50_000),
                    supplier_task_queue=b2b.settings.esimgo_task_queue,
                ),
                id=f"supplier-balance-{uuid.uuid4().hex[:8]}",
                task_queue=b2b.settings.temporal_task_queue,
            )
            result = await handle.result()
            if record_as and os.environ.get("TTELGO_RECORD_HISTORIES"):
                history = await handle.fetch_history()
                path = Path(__file__).parents[1] / "histories" / f"supplier_balance_{record_as}.json"
                path.write_text(history.to_json())
            return result, await scrape(port)

        with caplog.at_level(logging.WARNING, logger="activities.supplier_balance"):
            low, metrics = await check("123.45", record_as="low")
        assert low == SupplierBalance(currency="USD", balance_minor=12_345, low=True)
        assert sample(metrics, "ttelgo_supplier_balance_minor", currency="USD") == 12_345
        assert sample(metrics, "ttelgo_supplier_balance_low", currency="USD") == 1
        [warning] = [r for r in caplog.records if r.name == "activities.supplier_balance"]
        assert "12345 USD" in warning.getMessage() and "SUPPLIER_LOW_BALANCE_MINOR" in warning.getMessage()

        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="activities.supplier_balance"):
            enough, metrics = await check("2000")
        assert enough.low is False and enough.balance_minor == 200_000
        assert sample(metrics, "ttelgo_supplier_balance_minor", currency="USD") == 200_000
        assert sample(metrics, "ttelgo_supplier_balance_low", currency="USD") == 0
        assert not [r for r in caplog.records if r.name == "activities.supplier_balance"]


@pytest.mark.parametrize(
    "b2b",
    [
        {
            "worker": False,
            "settings": {"backlog_metrics_cache_seconds": 0, "stripe_webhook_secret": WEBHOOK_SECRET},
        }
    ],
    indirect=True,
)
async def test_backlog_gauges_count_what_waits_and_webhooks_are_counted_by_outcome(b2b: B2B) -> None:
    metrics = (await b2b.api.get("/metrics")).text
    assert sample(metrics, "ttelgo_notifications_queued", channel="EMAIL") == 0
    assert sample(metrics, "ttelgo_webhook_deliveries_pending") == 0
    assert sample(metrics, "ttelgo_webhook_events_unhandled", provider="stripe") == 0

    vendor = await b2b.new_vendor()
    async with b2b.sessions() as session, session.begin():
        session.add_all(
            [
                *(
                    Notification(
                        dedupe_key=f"queued-{n}",
                        channel=NotificationChannel.EMAIL,
                        template="t",
                        recipient="x",
                        status=status,
                    )
                    for n, status in enumerate(
                        [NotificationStatus.QUEUED, NotificationStatus.QUEUED, NotificationStatus.SENT]
                    )
                ),
                WebhookDelivery(
                    vendor_id=uuid.UUID(vendor.id),
                    event_id="e1",
                    event_type="order.completed",
                    url="https://example.com/hook",
                    payload={},
                    status=DeliveryStatus.PENDING,
                ),
                WebhookEvent(provider="stripe", event_id="evt_stuck", event_type="t", payload={}),
            ]
        )
    metrics = (await b2b.api.get("/metrics")).text
    assert sample(metrics, "ttelgo_notifications_queued", channel="EMAIL") == 2
    assert sample(metrics, "ttelgo_webhook_deliveries_pending") == 1
    assert sample(metrics, "ttelgo_webhook_events_unhandled", provider="stripe") == 1
    assert sample(metrics, "ttelgo_webhook_events_unhandled", provider="esimgo") == 0
    assert sample(metrics, "ttelgo_notifications_oldest_queued_seconds", channel="EMAIL") >= 0

    body = callback("8944000000000000001", "Utilisation", 500)
    url = "/api/v1/webhooks/esimgo"
    assert (await b2b.api.post(url, content=body, headers={"X-Signature-SHA256": "bad"})).status_code == 401
    for _ in range(2):
        answer = await b2b.api.post(url, content=body, headers={"X-Signature-SHA256": sign(body)})
        assert answer.status_code == 200, answer.text
    stripe = await b2b.api.post("/api/v1/webhooks/stripe", content=b"{}", headers={"Stripe-Signature": "t=1"})
    assert stripe.status_code == 400
    metrics = (await b2b.api.get("/metrics")).text
    for provider, outcome, count in (
        ("esimgo", "rejected", 1),
        ("esimgo", "accepted", 1),
        ("esimgo", "duplicate", 1),
        ("stripe", "rejected", 1),
    ):
        assert sample(metrics, "ttelgo_webhook_events_total", provider=provider, outcome=outcome) == count
    assert sample(metrics, "ttelgo_webhook_events_unhandled", provider="esimgo") == 1  # no worker here
    # The usage workflow this started has no worker in this test.
    await b2b.temporal.get_workflow_handle(usage_workflow_id(answer.json()["event_id"])).terminate()
