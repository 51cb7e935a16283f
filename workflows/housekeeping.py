"""Housekeeping: delete what has outlived its use, chore by chore, in bounded batches, then send the usage
alerts whose claiming run died before sending them. The Temporal Schedule `housekeeping` runs it hourly;
each run, with what it deleted and sent, is visible in the Temporal UI."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.contracts import (
        ALERT_RESEND_PATCH,
        PRUNE,
        RESEND_ALERTS,
        PruneBatch,
        Pruned,
        UnsentAlerts,
    )
    from ttelgo.housekeeping import Chore

SCHEDULE_ID = "housekeeping"
WORKFLOW_ID = "housekeeping"
MAX_BATCHES_PER_CHORE = 50  # a run's history stays small; what is left waits for the next run
# Expired rows still answer a late caller for a day (a replayed key, a reused refresh token is told apart
# from an unknown one) before they go.
EXPIRED_GRACE = timedelta(days=1)
# A usage alert is sent by the run that claimed it within seconds; one unsent after this, that run died
# (or gave up) first, and is sent here.
ALERT_SEND_GRACE = timedelta(minutes=10)
ALERTS_PER_BATCH = 100  # each one queued and its delivery started: far slower than a deleted row


class HousekeepingInput(BaseModel):
    api_usage_days: int = Field(ge=1)
    webhook_event_days: int = Field(ge=1)
    notification_days: int = Field(ge=1)
    login_failure_window_hours: float = Field(gt=0)
    batch_size: int = Field(default=5000, gt=0)


class HousekeepingResult(BaseModel):
    deleted: dict[Chore, int]
    batches: int
    finished: bool  # False when a chore needed more than MAX_BATCHES_PER_CHORE: the next run goes on
    alerts_resent: int = 0  # usage alerts sent for a run that died before sending them


def cutoffs(request: HousekeepingInput, now: datetime) -> dict[Chore, datetime]:
    return {
        Chore.API_USAGE: now - timedelta(days=request.api_usage_days),
        Chore.RATE_LIMIT_COUNTERS: now,
        Chore.IDEMPOTENCY_RECORDS: now - EXPIRED_GRACE,
        Chore.WEBHOOK_EVENTS: now - timedelta(days=request.webhook_event_days),
        Chore.NOTIFICATIONS: now - timedelta(days=request.notification_days),
        Chore.AUTH_SESSIONS: now - EXPIRED_GRACE,
        Chore.PASSWORD_RESETS: now - EXPIRED_GRACE,
        Chore.LOGIN_FAILURES: now - timedelta(hours=request.login_failure_window_hours),
    }


@workflow.defn(name="Housekeeping")
class HousekeepingWorkflow:
    @workflow.run
    async def run(self, request: HousekeepingInput) -> HousekeepingResult:
        result = HousekeepingResult(deleted={}, batches=0, finished=True)
        for chore, cutoff in cutoffs(request, workflow.now()).items():
            result.deleted[chore] = 0
            for _ in range(MAX_BATCHES_PER_CHORE):
                pruned = await workflow.execute_activity(
                    PRUNE,
                    PruneBatch(chore=chore, cutoff=cutoff, limit=request.batch_size),
                    result_type=Pruned,
                    start_to_close_timeout=timedelta(minutes=2),
                    retry_policy=RetryPolicy(
                        initial_interval=timedelta(seconds=5), maximum_interval=timedelta(minutes=5)
                    ),
                )
                result.deleted[chore] += pruned.rows
                result.batches += 1
                if pruned.rows < request.batch_size:
                    break
            else:
                result.finished = False
        if workflow.patched(ALERT_RESEND_PATCH):
            await self._resend_alerts(request, result)
        return result

    async def _resend_alerts(self, request: HousekeepingInput, result: HousekeepingResult) -> None:
        limit = min(request.batch_size, ALERTS_PER_BATCH)
        batch = UnsentAlerts(claimed_before=workflow.now() - ALERT_SEND_GRACE, limit=limit)
        for _ in range(MAX_BATCHES_PER_CHORE):
            sent: int = await workflow.execute_activity(
                RESEND_ALERTS,
                batch,
                result_type=int,
                start_to_close_timeout=timedelta(minutes=5),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=5), maximum_interval=timedelta(minutes=5)
                ),
            )
            result.alerts_resent += sent
            if sent < limit:
                return
        result.finished = False
