"""The 3-day retry window (time-skipping Temporal), URL safety when set and at delivery time."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.contracts import WebhookJob, webhook_workflow_id
from activities.webhooks import WebhookActivities
from tests.b2b.conftest import B2B
from tests.webhooks_out.conftest import Receiver, team_member
from ttelgo.db import session_factory
from ttelgo.models import DeliveryStatus, Vendor, WebhookDelivery
from ttelgo.webhooks import UnsafeWebhookUrl, check_url, check_url_resolves, new_secret
from ttelgo.webhooks.outbox import record_delivery
from workflows.webhook_delivery import WebhookDeliveryWorkflow

THREE_DAYS = 3 * 24 * 3600


@asynccontextmanager
async def _world(
    database_url: str, client: Client, *, public_only: bool
) -> AsyncIterator[tuple[async_sessionmaker[AsyncSession], str]]:
    engine = create_async_engine(database_url)
    sessions = session_factory(engine)
    hooks = WebhookActivities(sessions, public_only=public_only, timeout_s=5)
    queue = f"test-{uuid.uuid4().hex[:12]}"
    try:
        async with Worker(
            client,
            task_queue=queue,
            workflows=[WebhookDeliveryWorkflow],
            activities=[hooks.emit, hooks.send, hooks.finish],
        ):
            yield sessions, queue
    finally:
        await engine.dispose()


async def _row(sessions: async_sessionmaker[AsyncSession], url: str) -> WebhookDelivery:
    async with sessions() as session, session.begin():
        vendor = Vendor(name="Hooked", contact_email=f"{uuid.uuid4().hex[:8]}@example.com")
        vendor.webhook_url, vendor.webhook_secret = url, new_secret()
        session.add(vendor)
        await session.flush()
        row = await record_delivery(session, vendor, "ping", "evt_" + uuid.uuid4().hex, {"hello": "world"})
        assert row is not None
        return row


async def test_the_window_expiring_marks_the_delivery_failed(
    database_url: str, time_skipping_env: WorkflowEnvironment, receiver: Receiver
) -> None:
    receiver.status = 503  # never answers 2xx
    client = time_skipping_env.client
    async with _world(database_url, client, public_only=False) as (sessions, queue):
        row = await _row(sessions, receiver.url)
        outcome = await client.execute_workflow(
            WebhookDeliveryWorkflow.run,
            WebhookJob(delivery_id=row.id, window_s=THREE_DAYS),
            id=webhook_workflow_id(row.event_id),
            task_queue=queue,
        )
        described = await client.get_workflow_handle(webhook_workflow_id(row.event_id)).describe()
        async with sessions() as session:
            final = await session.get(WebhookDelivery, row.id)
    assert final is not None and not outcome.delivered
    assert final.status is DeliveryStatus.FAILED and final.next_attempt_at is None
    assert final.attempts == outcome.attempts == len(receiver.calls) > 10  # backoff doubling up to an hour
    assert final.last_status_code == 503 and final.last_error and final.last_error.startswith("HTTP 503")
    assert len({c.headers["webhook-id"] for c in receiver.calls}) == 1
    # Spread over (nearly) the whole window, in Temporal's (skipped) time: gave up within the last hour.
    assert described.close_time is not None
    lasted = (described.close_time - described.start_time).total_seconds()
    assert THREE_DAYS - 3600 <= lasted <= THREE_DAYS


async def test_a_private_url_is_refused_at_delivery_time_for_good(
    database_url: str, time_skipping_env: WorkflowEnvironment, receiver: Receiver
) -> None:
    client = time_skipping_env.client
    async with _world(database_url, client, public_only=True) as (sessions, queue):
        row = await _row(sessions, receiver.url)  # stored before the rule applied, e.g. a DNS change
        outcome = await client.execute_workflow(
            WebhookDeliveryWorkflow.run,
            WebhookJob(delivery_id=row.id),
            id=webhook_workflow_id(row.event_id),
            task_queue=queue,
        )
        async with sessions() as session:
            final = await session.get(WebhookDelivery, row.id)
    assert not outcome.delivered and outcome.attempts == 1 and receiver.calls == []
    assert final is not None and final.status is DeliveryStatus.FAILED
    assert final.last_error and final.last_error.startswith("refused:")


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/x",  # not https
        "https://127.0.0.1/hooks",
        "https://10.1.2.3/hooks",
        "https://192.168.0.10/hooks",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hooks",
        "https://[::ffff:10.0.0.1]/hooks",
        "https://100.64.0.1/hooks",
        "https://localhost/hooks",
        "https://user:pw@8.8.8.8/hooks",
    ],
)
def test_production_refuses_non_public_urls(url: str) -> None:
    with pytest.raises(UnsafeWebhookUrl):
        check_url(url, public_only=True)


async def test_production_refuses_hosts_that_resolve_privately() -> None:
    with pytest.raises(UnsafeWebhookUrl):
        await check_url_resolves("https://localhost.:8443/x", public_only=True)
    check_url("https://8.8.8.8/hooks", public_only=True)
    check_url("http://127.0.0.1:9000/hooks", public_only=False)  # development


PRODUCTION = {
    "ttelgo_env": "production",
    "stripe_secret_key": "sk_test_unused",
    "stripe_webhook_secret": "whsec_unused",
    "smtp_host": "127.0.0.1",
    "mail_from": "TTelGo <ops@example.com>",
}


@pytest.mark.parametrize("b2b", [{"settings": PRODUCTION}], indirect=True)
@pytest.mark.parametrize(
    "url",
    ["http://hooks.example.com/x", "https://127.0.0.1/h", "https://10.0.0.8/h", "https://169.254.169.254/"],
)
async def test_the_api_refuses_unsafe_urls_in_production(b2b: B2B, url: str) -> None:
    vendor = await b2b.new_vendor()
    member = await team_member(b2b, vendor)
    response = await b2b.api.put("/api/v1/vendor/webhook", json={"url": url}, headers=member)
    assert response.status_code == 422, response.text
    shown = await b2b.api.get("/api/v1/vendor/webhook", headers=member)
    assert shown.json()["url"] is None
