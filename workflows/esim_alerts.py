"""Sending a usage alert a workflow claimed: the customer's e-mail (card orders) or the vendor's webhook."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.contracts import SEND_ALERT, EsimAlert


async def send_alert(alert: EsimAlert) -> None:
    """Once per alert: the outbox row's dedupe key and the webhook's event id both derive from its id.
    One local activity hands it over and marks it sent; a run that dies or gives up first leaves it
    unsent, and hourly housekeeping sends it then."""
    try:
        await workflow.execute_local_activity(
            SEND_ALERT,
            alert,
            start_to_close_timeout=timedelta(seconds=30),
            schedule_to_close_timeout=timedelta(minutes=5),
        )
    except (ActivityError, ApplicationError) as failure:
        workflow.logger.error("alert %s not sent, housekeeping will: %s", alert.alert_id, failure)
