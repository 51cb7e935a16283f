"""Housekeeping: what has outlived its use is deleted in bounded batches, and nothing that is still of use."""

from __future__ import annotations

import contextlib
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from temporalio.client import ScheduleActionStartWorkflow
from temporalio.service import RPCError

from tests.b2b.conftest import B2B
from ttelgo.housekeeping import Chore
from ttelgo.models import (
    ApiUsageLog,
    IdempotencyRecord,
    IdempotencyState,
    Notification,
    NotificationChannel,
    NotificationStatus,
    WebhookEvent,
    WebhookEventStatus,
)
from ttelgo.models.identity import AccountRealm, AuthSession, LoginFailure, PasswordReset, RefreshToken
from ttelgo.models.ops import RateLimitCounter
from worker import ensure_housekeeping_schedule
from workflows.housekeeping import SCHEDULE_ID, HousekeepingInput, HousekeepingResult, HousekeepingWorkflow


def _rows(vendor_id: uuid.UUID, now: datetime, *, old: bool) -> list[object]:
    """One row per chore, past its cutoff when `old`, just within it otherwise."""
    tag = "old" if old else "kept"

    def ago(days: float) -> datetime:
        return now - timedelta(days=days + (1 if old else -1) * 0.5)

    session_id = uuid.uuid4()
    return [
        ApiUsageLog(
            vendor_id=vendor_id,
            method="GET",
            path=f"/{tag}",
            status_code=200,
            duration_ms=1,
            created_at=ago(90),
        ),
        RateLimitCounter(key=tag, hits=1, expires_at=ago(0)),
        IdempotencyRecord(
            scope="test",
            key=tag,
            method="POST",
            path="/",
            request_hash="0" * 64,
            state=IdempotencyState.COMPLETED,
            expires_at=ago(1),
        ),
        WebhookEvent(
            provider="stripe",
            event_id=tag,
            event_type="t",
            payload={},
            status=WebhookEventStatus.DELIVERED,
            processed_at=ago(90),
        ),
        # Never handled: kept for operators however old.
        WebhookEvent(
            provider="esimgo",
            event_id=f"{tag}-received",
            event_type="t",
            payload={},
            status=WebhookEventStatus.RECEIVED,
            created_at=ago(90),
        ),
        Notification(
            dedupe_key=tag,
            channel=NotificationChannel.EMAIL,
            template="t",
            recipient="x",
            status=NotificationStatus.SENT,
            sent_at=ago(90),
        ),
        Notification(
            dedupe_key=f"{tag}-failed",
            channel=NotificationChannel.EMAIL,
            template="t",
            recipient="x",
            status=NotificationStatus.FAILED,
            created_at=ago(90),
        ),
        AuthSession(
            id=session_id, realm=AccountRealm.VENDOR_USER, principal_id=vendor_id, created_at=ago(40)
        ),
        RefreshToken(session_id=session_id, token_hash=f"{tag}-token".ljust(64, "0"), expires_at=ago(1)),
        PasswordReset(
            realm=AccountRealm.USER,
            principal_id=uuid.uuid4(),
            token_hash=f"{tag}-reset".ljust(64, "0"),
            expires_at=ago(1),
        ),
        LoginFailure(key_hash=tag, failures=3, last_failure_at=ago(1)),
    ]


async def test_housekeeping_deletes_what_is_past_its_cutoff_in_batches_and_keeps_the_rest(b2b: B2B) -> None:
    vendor_id = uuid.UUID((await b2b.new_vendor()).id)
    now = datetime.now(UTC)
    async with b2b.sessions() as session, session.begin():
        session.add_all(_rows(vendor_id, now, old=True))
        await session.flush()  # sessions before their tokens
        session.add_all(_rows(vendor_id, now, old=False))
        session.add_all(
            ApiUsageLog(
                vendor_id=vendor_id,
                method="GET",
                path="/old",
                status_code=200,
                duration_ms=1,
                created_at=now - timedelta(days=100),
            )
            for _ in range(4)
        )
    handle = await b2b.temporal.start_workflow(
        HousekeepingWorkflow.run,
        HousekeepingInput(
            api_usage_days=90,
            webhook_event_days=90,
            notification_days=90,
            login_failure_window_hours=24,
            batch_size=2,
        ),
        id=f"housekeeping-{uuid.uuid4().hex[:8]}",
        task_queue=b2b.settings.temporal_task_queue,
    )
    result = await handle.result()

    deleted = {chore: 1 for chore in Chore} | {Chore.API_USAGE: 5}
    # 5 usage rows in batches of 2 take 3 batches; every other chore one.
    assert result == HousekeepingResult(deleted=deleted, batches=3 + len(Chore) - 1, finished=True)
    async with b2b.sessions() as session:
        assert set((await session.scalars(select(ApiUsageLog.path))).all()) == {"/kept"}
        counters = select(RateLimitCounter.key).where(RateLimitCounter.key.in_(("old", "kept")))
        assert (await session.scalars(counters)).all() == ["kept"]  # the API's own live counters aside
        assert (await session.scalars(select(IdempotencyRecord.key).filter_by(scope="test"))).all() == [
            "kept"
        ]
        assert set((await session.scalars(select(WebhookEvent.event_id))).all()) == {
            "kept",
            "old-received",
            "kept-received",
        }
        assert set((await session.scalars(select(Notification.dedupe_key))).all()) == {
            "kept",
            "old-failed",
            "kept-failed",
        }
        tokens = select(RefreshToken.token_hash).where(RefreshToken.token_hash.like("%-token%"))
        assert [t[:10] for t in (await session.scalars(tokens)).all()] == ["kept-token"]
        test_sessions = select(AuthSession.id).filter_by(principal_id=vendor_id)
        assert len((await session.scalars(test_sessions)).all()) == 1
        assert [t[:10] for t in (await session.scalars(select(PasswordReset.token_hash))).all()] == [
            "kept-reset"
        ]
        failures = select(LoginFailure.key_hash).where(LoginFailure.key_hash.in_(("old", "kept")))
        assert (await session.scalars(failures)).all() == ["kept"]
    if name := os.environ.get("TTELGO_RECORD_HISTORIES"):
        history = await handle.fetch_history()
        (Path(__file__).parents[1] / "histories" / f"housekeeping_{name}.json").write_text(history.to_json())


async def test_the_worker_keeps_an_hourly_housekeeping_schedule_with_todays_settings(b2b: B2B) -> None:
    try:
        await ensure_housekeeping_schedule(b2b.temporal, b2b.settings)
        changed = b2b.settings.model_copy(update={"api_usage_retention_days": 30})
        await ensure_housekeeping_schedule(b2b.temporal, changed)  # an existing one takes new settings
        described = await b2b.temporal.get_schedule_handle(SCHEDULE_ID).describe()
        action = described.schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow)
        assert action.workflow == "Housekeeping" and action.id == "housekeeping"
        [argument] = await b2b.temporal.data_converter.decode(action.args)
        assert argument["api_usage_days"] == 30
        assert [i.every for i in described.schedule.spec.intervals] == [timedelta(hours=1)]

        # One an operator paused stays paused through the next deploy or restart.
        await b2b.temporal.get_schedule_handle(SCHEDULE_ID).pause(note="restoring a backup")
        await ensure_housekeeping_schedule(b2b.temporal, b2b.settings)
        state = (await b2b.temporal.get_schedule_handle(SCHEDULE_ID).describe()).schedule.state
        assert state.paused and state.note == "restoring a backup"
    finally:
        with contextlib.suppress(RPCError):
            await b2b.temporal.get_schedule_handle(SCHEDULE_ID).delete()
