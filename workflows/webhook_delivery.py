"""The WebhookDelivery workflow (`webhook-{event id}`): one vendor event POSTed until it is answered 2xx.

`emit_webhook(...)` is what an emitting workflow calls: one local activity that writes the
`webhook_deliveries` row (once per event id, only for a vendor with a URL that subscribes to the type)
and starts this workflow through the Temporal client with a deterministic id, so the emitting history
gains one marker and never waits on a vendor. Here every attempt is one activity (a short HTTP timeout,
a bounded read) that records itself on the row; failures wait on a durable timer that doubles up to an
hour, until the retry window (3 days) is spent and the row is marked FAILED. Every attempt carries the
same `webhook-id` (the event id). Only ids are in this history; the payload stays in the database.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.contracts import (
        EMIT_WEBHOOK,
        FINISH_WEBHOOK,
        SEND_WEBHOOK,
        WEBHOOK_PATCH,
        EmitWebhook,
        WebhookAttempt,
        WebhookAttemptResult,
        WebhookEnd,
        WebhookJob,
        WebhookOutcome,
        webhook_event_id,
    )

LOCAL_STEP = {"start_to_close_timeout": timedelta(seconds=30)}
# The POST itself is bounded by WEBHOOK_TIMEOUT_SECONDS; the activity is retried (a crashed worker, the
# database away) a few times within one attempt's slot, a vendor's own failures are answered, not raised.
ATTEMPT_RETRIES = RetryPolicy(
    initial_interval=timedelta(seconds=2), maximum_interval=timedelta(seconds=30), maximum_attempts=5
)


async def emit_webhook(
    event_type: str,
    *,
    order_id: object = None,
    refund_id: object = None,
    topup_id: object = None,
    alert_id: object = None,
    subject: str | None = None,
) -> None:
    """Emits a vendor event from the calling workflow, once per run and type (or per `subject`, when a run
    emits several events of one type), behind the `vendor-webhooks` patch (histories recorded before
    webhooks existed emit nothing). A vendor's webhook never holds up or fails the caller: a step that
    cannot be done in minutes is logged and given up."""
    if not workflow.patched(WEBHOOK_PATCH):
        return
    event = EmitWebhook(
        event_type=event_type,
        event_id=webhook_event_id(subject or workflow.info().workflow_id, event_type),
        order_id=order_id,
        refund_id=refund_id,
        topup_id=topup_id,
        alert_id=alert_id,
    )
    try:
        await workflow.execute_local_activity(
            EMIT_WEBHOOK, event, schedule_to_close_timeout=timedelta(minutes=5), **LOCAL_STEP
        )
    except (ActivityError, ApplicationError) as failure:
        workflow.logger.error("webhook %s not emitted: %s", event_type, failure)


@workflow.defn(name="WebhookDelivery")
class WebhookDeliveryWorkflow:
    def __init__(self) -> None:
        self._now = False

    @workflow.signal
    def attempt_now(self) -> None:
        """A redelivery asked for while this run waits between attempts: the next attempt is now."""
        self._now = True

    @workflow.run
    async def run(self, job: WebhookJob) -> WebhookOutcome:
        deadline = workflow.now() + timedelta(seconds=job.window_s)
        backoff = timedelta(seconds=job.first_backoff_s)
        attempts = 0
        while True:
            attempts += 1
            retry_at = workflow.now() + backoff
            last_try = retry_at >= deadline
            try:
                result: WebhookAttemptResult = await workflow.execute_activity(
                    SEND_WEBHOOK,
                    WebhookAttempt(
                        delivery_id=job.delivery_id, next_attempt_at=None if last_try else retry_at
                    ),
                    result_type=WebhookAttemptResult,
                    start_to_close_timeout=timedelta(seconds=60),
                    retry_policy=ATTEMPT_RETRIES,
                )
            except ActivityError as failure:  # our side failed (database, worker): counted as a failure
                result = WebhookAttemptResult(delivered=False, error=str(failure.cause or failure))
            if result.delivered:
                return WebhookOutcome(delivered=True, attempts=attempts)
            if result.permanent or last_try:
                await workflow.execute_local_activity(
                    FINISH_WEBHOOK, WebhookEnd(delivery_id=job.delivery_id, error=result.error), **LOCAL_STEP
                )
                return WebhookOutcome(delivered=False, attempts=attempts, detail=result.error)
            self._now = False
            with contextlib.suppress(TimeoutError):  # the backoff elapsed (or a redelivery woke us)
                await workflow.wait_condition(lambda: self._now, timeout=backoff)
            backoff = min(backoff * 2, timedelta(seconds=job.max_backoff_s))
