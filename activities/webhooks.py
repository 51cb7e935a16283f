"""Vendor webhooks: `webhook_deliveries` rows, emitted by the workflow whose state change causes them and
POSTed, signed (Standard Webhooks), by the WebhookDelivery workflow (`webhook-{event id}`).

Emitting (`webhooks.emit`, a local activity of the emitting workflow) reads what the event carries from
the database (an order's ICCIDs and LPA strings included), writes the row once per vendor and event id,
and starts the delivery with a deterministic id. Sending (`webhooks.send`) checks the URL again (in
production: https and public addresses only), POSTs the stored body with the event id as `webhook-id`
under a short timeout, reads at most a few KiB of the answer, and records the attempt on the row.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contracts import (
    EMIT_WEBHOOK,
    FINISH_WEBHOOK,
    SEND_WEBHOOK,
    WEBHOOK_WORKFLOW,
    EmitWebhook,
    WebhookAttempt,
    WebhookAttemptResult,
    WebhookEnd,
    WebhookJob,
    webhook_workflow_id,
)
from ttelgo.esim_bundles import alert_details, esims_of
from ttelgo.low_balance import order_debit_crossing
from ttelgo.models import DeliveryStatus, Esim, Order, Payment, Refund, Vendor, WebhookDelivery
from ttelgo.qr import lpa
from ttelgo.webhooks import UnsafeWebhookUrl, check_url_resolves, sign_headers, signing_secrets
from ttelgo.webhooks.events import WebhookEventType as Event
from ttelgo.webhooks.events import serialize
from ttelgo.webhooks.outbox import record_delivery, start_delivery

log = logging.getLogger("ttelgo.webhooks")
MAX_RESPONSE_BYTES = 4096  # of the vendor's answer, kept for last_error; the rest is never read


class WebhookActivities:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        public_only: bool,
        timeout_s: float = 10,
        window_s: int = 3 * 24 * 3600,
        first_backoff_s: float = 30,
    ) -> None:
        self.sessions = sessions
        self.public_only = public_only
        self.timeout = httpx.Timeout(timeout_s, connect=min(5.0, timeout_s))
        self.window_s = window_s
        self.first_backoff_s = first_backoff_s

    def job(self, delivery_id: uuid.UUID) -> WebhookJob:
        return WebhookJob(
            delivery_id=delivery_id, window_s=self.window_s, first_backoff_s=self.first_backoff_s
        )

    # -- emitting ----------------------------------------------------------------------------------------
    @activity.defn(name=EMIT_WEBHOOK)
    async def emit(self, event: EmitWebhook) -> None:
        """Writes the row (once per event) and starts its delivery; both are safe to repeat."""
        async with self.sessions() as session, session.begin():
            found = await _event_data(session, event)
            if found is None:
                return
            vendor, data = found
            row = await record_delivery(session, vendor, event.event_type, event.event_id, data)
        if row is not None and row.status is DeliveryStatus.PENDING:
            await start_delivery(
                activity.client(),
                WEBHOOK_WORKFLOW,
                self.job(row.id),
                webhook_workflow_id(row.event_id),
                activity.info().task_queue,
            )

    # -- sending -----------------------------------------------------------------------------------------
    @activity.defn(name=SEND_WEBHOOK)
    async def send(self, attempt: WebhookAttempt) -> WebhookAttemptResult:
        async with self.sessions() as session:
            row = await session.get(WebhookDelivery, attempt.delivery_id)
            if row is None:
                return WebhookAttemptResult(delivered=False, permanent=True, error="no such delivery")
            if row.status is DeliveryStatus.DELIVERED:
                return WebhookAttemptResult(delivered=True)
            vendor = await session.get(Vendor, row.vendor_id)
            now = datetime.now(UTC)
            secrets = (
                signing_secrets(
                    vendor.webhook_secret,
                    vendor.webhook_previous_secret,
                    vendor.webhook_previous_secret_expires_at,
                    now,
                )
                if vendor is not None and vendor.deleted_at is None
                else []
            )
            url, event_id, body = row.url, row.event_id, serialize(row.payload)
        result = await self._post(url, event_id, body, secrets, now)
        async with self.sessions() as session, session.begin():
            values: dict[str, Any] = {
                "attempts": WebhookDelivery.attempts + 1,
                "last_attempt_at": now,
                "last_status_code": result.status_code,
                "last_error": result.error,
                "next_attempt_at": None if result.delivered or result.permanent else attempt.next_attempt_at,
            }
            if result.delivered:
                values |= {"status": DeliveryStatus.DELIVERED, "delivered_at": datetime.now(UTC)}
            await session.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id == attempt.delivery_id,
                    WebhookDelivery.status == DeliveryStatus.PENDING,
                )
                .values(**values)
            )
        if not result.delivered:
            log.warning("webhook %s to %s not delivered: %s", event_id, url, result.error)
        if result.status_code is not None and result.error:  # the vendor's answer stays in the database
            result = result.model_copy(update={"error": f"HTTP {result.status_code}"})
        return result

    async def _post(
        self, url: str, event_id: str, body: str, secrets: list[str], now: datetime
    ) -> WebhookAttemptResult:
        if not secrets:
            return WebhookAttemptResult(
                delivered=False, permanent=True, error="the vendor has no signing secret"
            )
        try:
            await check_url_resolves(url, public_only=self.public_only)
        except UnsafeWebhookUrl as refused:
            return WebhookAttemptResult(delivered=False, permanent=True, error=f"refused: {refused}")
        headers = sign_headers(event_id, body, secrets, now)
        try:
            async with (
                httpx.AsyncClient(timeout=self.timeout, follow_redirects=False) as client,
                client.stream("POST", url, content=body.encode(), headers=headers) as response,
            ):
                answer = bytearray()
                async for chunk in response.aiter_bytes():
                    answer += chunk
                    if len(answer) >= MAX_RESPONSE_BYTES:
                        break
        except httpx.TimeoutException:
            return WebhookAttemptResult(delivered=False, error="timed out")
        except httpx.HTTPError as exc:
            return WebhookAttemptResult(delivered=False, error=f"{type(exc).__name__}: {exc}"[:1000])
        if 200 <= response.status_code < 300:
            return WebhookAttemptResult(delivered=True, status_code=response.status_code)
        text = bytes(answer[:MAX_RESPONSE_BYTES]).decode("utf-8", "replace").strip()
        error = f"HTTP {response.status_code}" + (f": {text[:500]}" if text else "")
        return WebhookAttemptResult(delivered=False, status_code=response.status_code, error=error)

    @activity.defn(name=FINISH_WEBHOOK)
    async def finish(self, end: WebhookEnd) -> None:
        """The window is spent (or the event can never be sent): the row is FAILED."""
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id == end.delivery_id, WebhookDelivery.status == DeliveryStatus.PENDING
                )
                .values(
                    status=DeliveryStatus.FAILED,
                    next_attempt_at=None,
                    last_error=func.coalesce(WebhookDelivery.last_error, end.error),
                )
            )


async def _event_data(session: AsyncSession, event: EmitWebhook) -> tuple[Vendor, dict[str, Any]] | None:
    """The vendor the event is for and what it carries; None for a card customer's order or refund."""
    kind = event.event_type
    if kind in (Event.ORDER_COMPLETED, Event.ORDER_FAILED, Event.ORDER_REFUNDED):
        order = await _get(session, Order, event.order_id)
        data = _order(order)
        if kind == Event.ORDER_COMPLETED:
            esims = await session.scalars(select(Esim).where(esims_of(order)).order_by(Esim.iccid))
            data["esims"] = [
                {
                    "iccid": e.iccid,
                    "lpa": lpa(e.smdp_address, e.matching_id),
                    "smdp_address": e.smdp_address,
                    "matching_id": e.matching_id,
                }
                for e in esims
            ]
        vendor_id = order.vendor_id
    elif kind in (Event.REFUND_SUCCEEDED, Event.REFUND_FAILED):
        refund = await _get(session, Refund, event.refund_id)
        order = await _get(session, Order, refund.order_id)
        data = {
            "refund_id": str(refund.id),
            "order_id": str(order.id),
            "status": refund.status.value,
            "amount_minor": refund.amount_minor,
            "currency": refund.currency,
            "reason": refund.reason,
            "failure_reason": refund.failure_reason,
            "order": _order(order),
        }
        vendor_id = order.vendor_id
    elif kind in (Event.TOPUP_COMPLETED, Event.TOPUP_FAILED):
        payment = await _get(session, Payment, event.topup_id)
        data = {
            "topup_id": str(payment.id),
            "status": "COMPLETED" if kind == Event.TOPUP_COMPLETED else "FAILED",
            "amount_minor": payment.amount_minor,
            "currency": payment.currency,
            "failure_reason": payment.failure_message,
        }
        vendor_id = payment.vendor_id
    elif kind == Event.WALLET_LOW_BALANCE:
        # The figures of the crossing itself (the order's posting), not of whenever this step runs.
        crossing = await order_debit_crossing(session, order_id=event.order_id)
        if crossing is None:
            return None
        data = {
            "vendor_id": str(crossing.vendor_id),
            "balance_minor": crossing.balance_minor,
            "available_minor": crossing.available_minor,
            "threshold_minor": crossing.threshold_minor,
            "currency": crossing.currency,
        }
        vendor_id = crossing.vendor_id
    elif kind in (Event.ESIM_USAGE_THRESHOLD, Event.ESIM_EXPIRING):
        found = await alert_details(session, event.alert_id) if event.alert_id else None
        if found is None:
            return None
        order, data = found
        vendor_id = order.vendor_id
    else:
        raise ApplicationError(f"unknown event type {kind}", type="WEBHOOK_EVENT_UNKNOWN", non_retryable=True)
    if vendor_id is None:
        return None
    vendor = await session.get(Vendor, vendor_id)
    return (vendor, data) if vendor is not None else None


def _order(order: Order) -> dict[str, Any]:
    return {
        "order_id": str(order.id),
        "status": order.status.value,
        "bundle_code": order.bundle_code,
        "quantity": order.quantity,
        "total_minor": order.total_minor,
        "currency": order.currency,
        "customer_reference": order.customer_reference,
        "failure_code": order.failure_code,
        "failure_reason": order.failure_reason,
    }


async def _get(session: AsyncSession, model: type, key: uuid.UUID | None) -> Any:
    found = await session.get(model, key) if key is not None else None
    if found is None:
        raise ApplicationError(
            f"no {model.__name__} {key}", type="WEBHOOK_SUBJECT_MISSING", non_retryable=True
        )
    return found
