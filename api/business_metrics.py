"""The API's business metrics (see `ttelgo.business_metrics` for what is measured where): inbound webhooks
by provider and outcome, counted as they are answered, and the backlogs (e-mails and vendor webhooks
waiting to go out, inbound events not handed on), read from the database when `/metrics` is scraped.

Every API process reports the same backlogs; alerts and dashboards take their `max`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ttelgo import business_metrics as names
from ttelgo.models import (
    DeliveryStatus,
    Notification,
    NotificationChannel,
    NotificationStatus,
    WebhookDelivery,
    WebhookEvent,
    WebhookEventStatus,
)

log = logging.getLogger(__name__)
WEBHOOK_PROVIDERS = ("esimgo", "stripe")
READ_TIMEOUT_S = 2.0  # a scrape must not hang on a database that does not answer


class WebhookOutcome(StrEnum):
    ACCEPTED = "accepted"  # recorded and handed on
    DUPLICATE = "duplicate"  # seen before: nothing done
    IGNORED = "ignored"  # recorded, nothing to hand it to
    RETRY = "retry"  # recorded, Temporal unreachable: the provider redelivers
    REJECTED = "rejected"  # bad signature or payload: nothing stored


@dataclass(frozen=True)
class _Backlog:
    """Rows waiting, by one label, with the age of the oldest."""

    count: str
    oldest: str
    what: str
    label: str | None
    known: Sequence[str]


NOTIFICATIONS = _Backlog(
    names.NOTIFICATIONS_QUEUED,
    names.NOTIFICATIONS_OLDEST_QUEUED_SECONDS,
    "notifications queued (e-mail and vendor messages not sent yet)",
    "channel",
    [channel.value for channel in NotificationChannel],
)
DELIVERIES = _Backlog(
    names.WEBHOOK_DELIVERIES_PENDING,
    names.WEBHOOK_DELIVERIES_OLDEST_PENDING_SECONDS,
    "vendor webhook deliveries not delivered yet",
    None,
    [],
)
INBOUND = _Backlog(
    names.WEBHOOK_EVENTS_UNHANDLED,
    names.WEBHOOK_EVENTS_OLDEST_UNHANDLED_SECONDS,
    "inbound webhook events recorded but not handed on (RECEIVED)",
    "provider",
    WEBHOOK_PROVIDERS,
)


def _families(backlog: _Backlog, rows: Iterable[Any]) -> list[Metric]:
    """Known label values answer 0 when nothing waits, so a series never vanishes from an alert."""
    labels = [backlog.label] if backlog.label else []
    found = {str(row.key) if backlog.label else "": (row.n, row.oldest_s) for row in rows}
    keys = sorted({*backlog.known, *found}) if backlog.label else [""]
    count = GaugeMetricFamily(backlog.count, f"Number of {backlog.what}", labels=labels)
    oldest = GaugeMetricFamily(backlog.oldest, f"Age of the oldest of the {backlog.what}", labels=labels)
    for key in keys:
        n, oldest_s = found.get(key, (0, 0.0))
        values = [key] if backlog.label else []
        count.add_metric(values, n)
        oldest.add_metric(values, float(oldest_s or 0.0))
    return [count, oldest]


async def _read(session: AsyncSession) -> list[Metric]:
    age = func.extract("epoch", func.now() - func.min(Notification.created_at))
    notifications = await session.execute(
        select(Notification.channel.label("key"), func.count().label("n"), age.label("oldest_s"))
        .where(Notification.status == NotificationStatus.QUEUED)
        .group_by(Notification.channel)
    )
    deliveries = await session.execute(
        select(
            func.count().label("n"),
            func.extract("epoch", func.now() - func.min(WebhookDelivery.created_at)).label("oldest_s"),
        ).where(WebhookDelivery.status == DeliveryStatus.PENDING)
    )
    inbound = await session.execute(
        select(
            WebhookEvent.provider.label("key"),
            func.count().label("n"),
            func.extract("epoch", func.now() - func.min(WebhookEvent.created_at)).label("oldest_s"),
        )
        .where(WebhookEvent.status == WebhookEventStatus.RECEIVED)
        .group_by(WebhookEvent.provider)
    )
    return [
        *_families(NOTIFICATIONS, notifications),
        *_families(DELIVERIES, deliveries),
        *_families(INBOUND, inbound),
    ]


class BacklogCollector(Collector):
    """Serves the backlog gauges read by the last `refresh`, which reads at most once per `cache_s`, so
    several scrapers do not each query the database."""

    def __init__(self, cache_s: float) -> None:
        self.cache_s = cache_s
        self._families: list[Metric] = []
        self._read_at: float | None = None
        self._lock = asyncio.Lock()

    def _fresh(self) -> bool:
        return self._read_at is not None and time.monotonic() - self._read_at < self.cache_s

    async def refresh(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        if self._fresh():
            return
        async with self._lock:
            if self._fresh():
                return
            try:
                async with asyncio.timeout(READ_TIMEOUT_S), sessions() as session:
                    self._families = await _read(session)
            except (SQLAlchemyError, OSError, TimeoutError) as exc:
                # The database being away is /readyz's news; here the backlog series go missing.
                log.warning("backlog metrics not read: %s", exc)
                self._families = []
            self._read_at = time.monotonic()

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


class BusinessMetrics:
    def __init__(self, registry: CollectorRegistry, backlog_cache_s: float) -> None:
        self.webhook_events = Counter(
            names.WEBHOOK_EVENTS,
            "Inbound webhooks answered, by provider and outcome",
            ("provider", "outcome"),
            registry=registry,
        )
        self.backlog = BacklogCollector(backlog_cache_s)
        registry.register(self.backlog)

    def webhook(self, provider: str, outcome: WebhookOutcome) -> None:
        self.webhook_events.labels(provider, outcome.value).inc()
