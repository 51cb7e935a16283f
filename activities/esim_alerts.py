"""Sending usage alerts: an alert's e-mail (card orders) or vendor webhook handed to the outbox, and the
alert marked sent. The run that claimed an alert sends it (`esim.send_alert`); housekeeping sends again
an alert whose run died first (`esim.resend_alerts`). A repeat is a no-op downstream: the outbox row's
dedupe key and the webhook's event id both derive from the alert id, and a delivery that ran is not run
again."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contracts import RESEND_ALERTS, SEND_ALERT, EsimAlert, UnsentAlerts
from activities.notifications import NotificationActivities
from activities.webhooks import WebhookActivities
from ttelgo.esim_bundles import mark_sent, unsent_alerts
from ttelgo.models import Channel

# Nothing could ever be sent (the order has no customer to write to): the alert is done with.
UNSENDABLE = frozenset({"NOTIFICATION_UNQUEUEABLE"})


class AlertActivities:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        notifications: NotificationActivities,
        webhooks: WebhookActivities,
    ) -> None:
        self.sessions = sessions
        self.notifications = notifications
        self.webhooks = webhooks

    @activity.defn(name=SEND_ALERT)
    async def send(self, alert: EsimAlert) -> None:
        await self._hand_over(alert)
        async with self.sessions() as session, session.begin():
            await mark_sent(session, alert.alert_id)

    @activity.defn(name=RESEND_ALERTS)
    async def resend_unsent(self, batch: UnsentAlerts) -> int:
        """Sends the batch's alerts again; they are marked sent when the whole batch is (a retry sends the
        rest, and the ones already handed over again, harmlessly)."""
        async with self.sessions() as session, session.begin():
            unsent = await unsent_alerts(session, batch.claimed_before, batch.limit)
            for row, order in unsent:
                alert = EsimAlert(
                    alert_id=row.id, kind=row.kind.value, channel=order.channel, order_id=order.id
                )
                await self._hand_over(alert)
                await mark_sent(session, row.id)
        return len(unsent)

    async def _hand_over(self, alert: EsimAlert) -> None:
        try:
            if alert.channel is Channel.B2C:
                await self.notifications.queue(alert.mail())
            else:
                await self.webhooks.emit(alert.webhook())
        except ApplicationError as refused:
            if refused.type not in UNSENDABLE:
                raise
