"""A worker process killed with SIGKILL while it POSTs `order.completed` to a slow vendor endpoint: a
second worker delivers the same event (the same `webhook-id`, at least once, never a second event), one
`webhook_deliveries` row ends DELIVERED and the last request's signature verifies."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi import FastAPI, Request, Response
from sqlalchemy import select
from standardwebhooks import Webhook

from activities.contracts import webhook_event_id
from tests.b2b.conftest import B2B
from tests.support.stack import stop_worker_processes, wait_for, worker_process
from tests.webhooks_out.conftest import team_member
from ttelgo.models import DeliveryStatus, WebhookDelivery
from ttelgo.sandbox.processes import ManagedProcess
from ttelgo.sandbox.threaded_server import serve_in_thread

SLOW_SECONDS = 3  # under WEBHOOK_TIMEOUT_SECONDS (10): every answer is a 200, only late


@dataclass
class SlowReceiver:
    """A vendor endpoint that records each request as it arrives, then sleeps before answering 200."""

    url: str = ""
    arrived: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    answered: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def snapshot(self) -> list[tuple[dict[str, str], bytes]]:
        with self.lock:
            return list(self.arrived)


@pytest.fixture
def slow_receiver() -> Iterator[SlowReceiver]:
    state = SlowReceiver()
    app = FastAPI()

    @app.post("/hooks")
    async def hook(request: Request) -> Response:
        body = await request.body()
        with state.lock:
            state.arrived.append((dict(request.headers), body))
        await asyncio.sleep(SLOW_SECONDS)
        with state.lock:
            state.answered += 1
        return Response("ok", status_code=200)

    with serve_in_thread(app) as base:
        state.url = f"{base}/hooks"
        yield state


@pytest.mark.parametrize(
    "b2b", [{"worker": False, "settings": {"webhook_first_backoff_seconds": 1}}], indirect=True
)
async def test_sigkill_mid_delivery_then_restart_delivers_one_event(
    b2b: B2B, slow_receiver: SlowReceiver, tmp_path: Path
) -> None:
    first = worker_process(b2b.settings, tmp_path / "worker-1.log")
    second: ManagedProcess | None = None
    try:
        vendor = await b2b.new_vendor(balance=100_000)
        member = await team_member(b2b, vendor)
        put = await b2b.api.put("/api/v1/vendor/webhook", json={"url": slow_receiver.url}, headers=member)
        assert put.status_code == 200, put.text
        secret = put.json()["secret"]
        assert secret.startswith("whsec_")

        response = await b2b.order(vendor, wait=0)
        assert response.status_code == 202, response.text
        order_id = response.json()["id"]

        async def first_post_in_flight() -> bool:
            return len(slow_receiver.snapshot()) >= 1

        async with asyncio.timeout(90):
            await wait_for(first_post_in_flight)
        with slow_receiver.lock:
            assert slow_receiver.answered == 0, "the first POST was answered before the worker was killed"
            os.kill(first.pid, signal.SIGKILL)  # the endpoint answers after the worker is gone
        first.stop()
        second = worker_process(b2b.settings, tmp_path / "worker-2.log")

        async def completed() -> bool:
            polled = await b2b.api.get(f"/api/v1/vendor/orders/{order_id}", headers=vendor.headers)
            return polled.json()["status"] == "COMPLETED"

        async def delivered() -> bool:
            async with b2b.sessions() as session:
                rows = list(
                    await session.scalars(
                        select(WebhookDelivery).where(WebhookDelivery.vendor_id == uuid.UUID(vendor.id))
                    )
                )
            return any(row.status is DeliveryStatus.DELIVERED for row in rows)

        async def retried() -> bool:
            return len(slow_receiver.snapshot()) >= 2

        # The killed attempt is retried once its activity times out (60 s), on the second worker.
        async with asyncio.timeout(180):
            await wait_for(completed)
            await wait_for(delivered)
            await wait_for(retried)
    finally:
        await stop_worker_processes(b2b.temporal, first, second)

    calls = slow_receiver.snapshot()
    assert len(calls) >= 2, "the killed attempt was never retried"
    event_id = webhook_event_id(f"order-{order_id}", "order.completed")
    assert {headers["webhook-id"] for headers, _ in calls} == {event_id}, "two different events for one order"
    assert len({body for _, body in calls}) == 1  # the same event, byte for byte

    last_headers, last_body = calls[-1]
    event = Webhook(secret).verify(last_body, last_headers)
    assert event["type"] == "order.completed"
    assert event["data"]["order_id"] == order_id

    async with b2b.sessions() as session:
        rows = list(
            await session.scalars(
                select(WebhookDelivery).where(WebhookDelivery.vendor_id == uuid.UUID(vendor.id))
            )
        )
    assert [(row.event_id, row.event_type) for row in rows] == [(event_id, "order.completed")]
    [row] = rows
    assert row.status is DeliveryStatus.DELIVERED
    assert row.last_status_code == 200 and row.delivered_at is not None and row.next_attempt_at is None
