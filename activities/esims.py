"""eSIM records: usage reported by the supplier lands here."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.contracts import APPLY_USAGE, UsageEvent, UsageOutcome
from ttelgo.models import Esim, EsimStatus, WebhookEvent, WebhookEventStatus

PROVIDER = "esimgo"


class EsimActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    @activity.defn(name=APPLY_USAGE)
    async def apply_usage(self, event: UsageEvent) -> UsageOutcome:
        cb = event.callback
        async with self.sessions() as session, session.begin():
            esim = await session.scalar(select(Esim).where(Esim.iccid == cb.iccid).with_for_update())
            if esim is None:
                outcome = UsageOutcome(applied=False, detail=f"no eSIM with ICCID {cb.iccid} in our records")
            else:
                _apply(esim, event)
                outcome = UsageOutcome(applied=True, detail=f"{cb.alert_type} applied")
            await session.execute(
                update(WebhookEvent)
                .where(WebhookEvent.provider == PROVIDER, WebhookEvent.event_id == event.event_id)
                .values(
                    status=WebhookEventStatus.DELIVERED if outcome.applied else WebhookEventStatus.IGNORED,
                    error=None if outcome.applied else outcome.detail,
                    processed_at=datetime.now(UTC),
                )
            )
        return outcome


def _apply(esim: Esim, event: UsageEvent) -> None:
    """Callbacks arrive late and out of order: remaining data for the same bundle only ever goes down."""
    cb = event.callback
    used = cb.remaining_bytes is not None and cb.remaining_bytes < (cb.initial_bytes or 0)
    if cb.alert_type == "FirstUse" or used:
        esim.first_used_at = esim.first_used_at or cb.start_time or datetime.now(UTC)
        if esim.status is EsimStatus.RELEASED:
            esim.status = EsimStatus.INSTALLED
    if cb.remaining_bytes is None or (cb.bundle_name and cb.bundle_name != esim.bundle_name):
        return
    current = esim.data_remaining_bytes
    esim.data_remaining_bytes = cb.remaining_bytes if current is None else min(current, cb.remaining_bytes)
    esim.data_total_bytes = cb.initial_bytes or esim.data_total_bytes
    esim.unlimited = cb.unlimited
    if esim.data_remaining_bytes == 0 and not cb.unlimited:
        esim.bundle_state = "depleted"
    elif esim.bundle_state in (None, "processing", "queued"):
        esim.bundle_state = "active"
    esim.expires_at = cb.end_time or esim.expires_at
