"""A worker process killed with SIGKILL while it sends a message to a slow SMTP server: a second worker
sends it again (at least once, every copy with the same Message-ID) and the one outbox row ends SENT."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from activities.contracts import DeliveryOutcome, notification_workflow_id
from activities.notifications import queue_low_balance, start_delivery
from tests.b2b.conftest import B2B
from tests.support.stack import stop_worker_processes, wait_for, worker_process
from ttelgo.mail.render import message_id
from ttelgo.models import Notification, NotificationStatus
from ttelgo.sandbox.processes import ManagedProcess, free_port

SLOW_SECONDS = 3  # under SMTP_TIMEOUT_SECONDS (30): every message is accepted, only late


@dataclass
class SlowSmtp:
    """An SMTP server that records each message as its DATA arrives, then waits before answering 250."""

    port: int = 0
    arrived: list[EmailMessage] = field(default_factory=list)
    answered: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content or b""
        message = message_from_bytes(
            content if isinstance(content, bytes) else content.encode(), policy=policy.default
        )
        with self.lock:
            self.arrived.append(message)  # type: ignore[arg-type]
        await asyncio.sleep(SLOW_SECONDS)
        with self.lock:
            self.answered += 1
        return "250 Message accepted for delivery"

    def snapshot(self) -> list[EmailMessage]:
        with self.lock:
            return list(self.arrived)


@pytest.fixture
def slow_smtp() -> Iterator[SlowSmtp]:
    state = SlowSmtp(port=free_port())
    controller = Controller(state, hostname="127.0.0.1", port=state.port)
    controller.start()
    try:
        yield state
    finally:
        controller.stop()


@pytest.mark.parametrize("b2b", [{"worker": False}], indirect=True)
async def test_sigkill_mid_send_then_restart_sends_one_message_id(
    b2b: B2B, slow_smtp: SlowSmtp, tmp_path: Path
) -> None:
    first = worker_process(b2b.settings, tmp_path / "worker-1.log", SMTP_PORT=str(slow_smtp.port))
    second: ManagedProcess | None = None
    try:
        vendor = await b2b.new_vendor()
        async with b2b.sessions() as session, session.begin():
            row = await queue_low_balance(session, uuid.UUID(vendor.id), 150, 1_000, "USD", "crash-test")
        notification_id = row.id
        await start_delivery(b2b.temporal, notification_id, b2b.settings.temporal_task_queue, 3600)

        async def first_send_in_flight() -> bool:
            return len(slow_smtp.snapshot()) >= 1

        async with asyncio.timeout(90):
            await wait_for(first_send_in_flight)
        with slow_smtp.lock:
            assert slow_smtp.answered == 0, "the first message was accepted before the worker was killed"
            os.kill(first.pid, signal.SIGKILL)  # the server answers 250 after the worker is gone
        first.stop()
        second = worker_process(b2b.settings, tmp_path / "worker-2.log", SMTP_PORT=str(slow_smtp.port))

        async def settled() -> bool:
            async with b2b.sessions() as session:
                found = await session.get(Notification, notification_id)
            return found is not None and found.status is not NotificationStatus.QUEUED

        # The killed send is retried once its activity times out (60 s), on the second worker.
        async with asyncio.timeout(180):
            await wait_for(settled)
            handle = b2b.temporal.get_workflow_handle(
                notification_workflow_id(notification_id), result_type=DeliveryOutcome
            )
            outcome = await handle.result()
    finally:
        await stop_worker_processes(b2b.temporal, first, second)

    assert outcome.sent, outcome
    copies = slow_smtp.snapshot()
    assert len(copies) >= 2, "the killed send was never retried"
    assert {str(m["Message-ID"]).strip() for m in copies} == {message_id(notification_id)}
    assert {m["To"] for m in copies} == {row.recipient}
    assert {m["X-TTelGo-Template"] for m in copies} == {"low_balance"}

    async with b2b.sessions() as session:
        rows = list(
            await session.scalars(select(Notification).where(Notification.vendor_id == uuid.UUID(vendor.id)))
        )
    assert [r.id for r in rows] == [notification_id]
    [sent] = rows
    assert sent.status is NotificationStatus.SENT and sent.sent_at is not None
    assert sent.attempts == 1  # the killed attempt's transaction never committed
