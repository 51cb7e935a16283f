"""Sending a usage alert a workflow claimed: the customer's e-mail (card orders) or the vendor's webhook."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.contracts import ALERT_DELIVERY_PATCH, SEND_ALERT, EsimAlert
    from ttelgo.models.orders import Channel
    from workflows.notification import notify
    from workflows.webhook_delivery import emit_webhook


async def send_alert(alert: EsimAlert) -> None:
    """Once per alert: the outbox row's dedupe key and the webhook's event id both derive from its id.
    One local activity hands it over and marks it sent; a run that dies or gives up first leaves it
    unsent, and hourly housekeeping sends it then. Histories recorded before that send as they did."""
    if workflow.patched(ALERT_DELIVERY_PATCH):
        try:
            await workflow.execute_local_activity(
                SEND_ALERT,
                alert,
                start_to_close_timeout=timedelta(seconds=30),
                schedule_to_close_timeout=timedelta(minutes=5),
            )
        except (ActivityError, ApplicationError) as failure:
            workflow.logger.error("alert %s not sent, housekeeping will: %s", alert.alert_id, failure)
        return
    if alert.channel is Channel.B2C:
        await notify(alert.mail())
        return
    await emit_webhook(alert.webhook_type(), alert_id=alert.alert_id, subject=alert.webhook_subject())
