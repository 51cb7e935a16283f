"""The Notification workflow (`notification-{id}`): one outbox row sent once, with retries.

`notify(...)` is what an emitting workflow calls: one local activity that writes the row (once per dedupe
key) and starts this workflow through the Temporal client with a deterministic id, rather than a child
workflow, so the emitting history gains a single marker, the parent never waits on mail, and a repeated
queueing step finds the same row and the same run. Delivery is one activity retried with backoff for the
row's budget (SMTP down, 4xx answers); a permanent refusal (5xx, a template that cannot be rendered) or a
spent budget marks the row FAILED. Only the notification id is in this history.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.contracts import (
        FAIL_NOTIFICATION,
        QUEUE_NOTIFICATION,
        SEND_NOTIFICATION,
        Delivery,
        DeliveryOutcome,
        Notify,
    )

LOCAL_STEP = {"start_to_close_timeout": timedelta(seconds=30)}
SEND_RETRIES = RetryPolicy(
    initial_interval=timedelta(seconds=5), backoff_coefficient=2, maximum_interval=timedelta(minutes=15)
)


async def notify(request: Notify) -> None:
    """Queue a message and start its delivery. Mail never holds up or fails the calling workflow: after a
    few minutes of failures the step is given up and logged (the row, if written, can be resent)."""
    try:
        await workflow.execute_local_activity(
            QUEUE_NOTIFICATION, request, schedule_to_close_timeout=timedelta(minutes=5), **LOCAL_STEP
        )
    except (ActivityError, ApplicationError) as failure:
        workflow.logger.error("%s not queued: %s", request.template.value, failure)


@workflow.defn(name="Notification")
class NotificationWorkflow:
    @workflow.run
    async def run(self, delivery: Delivery) -> DeliveryOutcome:
        try:
            await workflow.execute_activity(
                SEND_NOTIFICATION,
                delivery.notification_id,
                start_to_close_timeout=timedelta(seconds=60),
                schedule_to_close_timeout=timedelta(seconds=delivery.retry_budget_s),
                retry_policy=SEND_RETRIES,
            )
        except ActivityError as failure:
            cause = failure.cause
            detail = cause.message if isinstance(cause, ApplicationError) else str(cause or failure)
            await workflow.execute_local_activity(FAIL_NOTIFICATION, delivery.notification_id, **LOCAL_STEP)
            return DeliveryOutcome(sent=False, detail=detail)
        return DeliveryOutcome(sent=True)
