"""The business metrics: their names, and how the worker records the ones an activity causes.

Each number is measured where it happens exactly once. What an activity changes in the database is counted
on the worker's Prometheus port (`WORKER_METRICS_PORT`) through the Temporal SDK's meter, only when the
change committed and was not already there, so a retried activity does not count twice. Backlogs are read
from the database by the API when `/metrics` is scraped (`api/business_metrics.py`); inbound webhooks are
counted by the API, which is where they arrive. Counters are exported with Prometheus' `_total` suffix.
"""

from __future__ import annotations

from datetime import datetime

from temporalio.common import MetricMeter

from ttelgo.models import Channel, OrderStatus

# Worker (Temporal meter); reconciliation and the order workflow count their own beside these.
ORDERS_FINISHED = "ttelgo_orders_finished"
ORDER_COMPLETION_SECONDS = "ttelgo_order_completion_seconds"
REVENUE_MINOR = "ttelgo_revenue_minor"
SUPPLIER_COST_MINOR = "ttelgo_supplier_cost_minor"
SUPPLIER_BALANCE_MINOR = "ttelgo_supplier_balance_minor"
SUPPLIER_BALANCE_LOW = "ttelgo_supplier_balance_low"
# API (prometheus_client)
WEBHOOK_EVENTS = "ttelgo_webhook_events"
NOTIFICATIONS_QUEUED = "ttelgo_notifications_queued"
NOTIFICATIONS_OLDEST_QUEUED_SECONDS = "ttelgo_notifications_oldest_queued_seconds"
WEBHOOK_DELIVERIES_PENDING = "ttelgo_webhook_deliveries_pending"
WEBHOOK_DELIVERIES_OLDEST_PENDING_SECONDS = "ttelgo_webhook_deliveries_oldest_pending_seconds"
WEBHOOK_EVENTS_UNHANDLED = "ttelgo_webhook_events_unhandled"
WEBHOOK_EVENTS_OLDEST_UNHANDLED_SECONDS = "ttelgo_webhook_events_oldest_unhandled_seconds"

# A B2B order completes in seconds; a card order waits for its customer, up to the payment window.
ORDER_COMPLETION_BUCKETS_S = (1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)
HISTOGRAM_BUCKETS = {ORDER_COMPLETION_SECONDS: ORDER_COMPLETION_BUCKETS_S}


def order_finished(
    meter: MetricMeter,
    *,
    channel: Channel,
    status: OrderStatus,
    currency: str,
    total_minor: int,
    supplier_cost_minor: int | None,
    created_at: datetime,
    completed_at: datetime | None,
) -> None:
    """An order reached its final status; a completed one adds its sale and its supplier cost."""
    meter.create_counter(ORDERS_FINISHED, "Orders that reached a final status").add(
        1, {"channel": channel.value, "status": status.value}
    )
    if status is not OrderStatus.COMPLETED:
        return
    money = {"channel": channel.value, "currency": currency}
    meter.create_counter(REVENUE_MINOR, "Sales of completed orders, in minor units").add(total_minor, money)
    if supplier_cost_minor:
        meter.create_counter(
            SUPPLIER_COST_MINOR, "What eSIM Go charged for completed orders, in minor units"
        ).add(supplier_cost_minor, money)
    if completed_at is not None:
        meter.create_histogram_float(
            ORDER_COMPLETION_SECONDS, "From an order's creation to COMPLETED", "s"
        ).record(max((completed_at - created_at).total_seconds(), 0.0), {"channel": channel.value})


def supplier_balance(meter: MetricMeter, *, currency: str, balance_minor: int, low: bool) -> None:
    labels = {"currency": currency}
    # Temporal's gauges take no negative values; an overdrawn balance shows as 0 (and as low).
    meter.create_gauge(SUPPLIER_BALANCE_MINOR, "eSIM Go organisation balance, in minor units").set(
        max(balance_minor, 0), labels
    )
    meter.create_gauge(
        SUPPLIER_BALANCE_LOW, "1 while the eSIM Go balance is below SUPPLIER_LOW_BALANCE_MINOR"
    ).set(int(low), labels)
