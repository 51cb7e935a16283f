"""The e-mail outbox: `notifications` rows, queued by the workflow whose state change causes them and sent
once each by the Notification workflow (`notification-{id}`).

Queueing (`notifications.queue`, a local activity of the emitting workflow) reads everything the message
needs from the database, writes the row once per dedupe key, and starts its delivery workflow through the
Temporal client with a deterministic id: a retried queueing step finds the same row and the same (or
finished) workflow. Sending (`notifications.send`) locks the row, sends over SMTP and marks it SENT in the
same transaction; a crash between the SMTP answer and the commit can repeat the message, but with the same
Message-ID, so it is recognisable. Nothing personal travels through Temporal: ids in, no data out.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError

from activities.contracts import (
    FAIL_NOTIFICATION,
    NOTIFICATION_WORKFLOW,
    QUEUE_ESIMS_READY,
    QUEUE_NOTIFICATION,
    SEND_NOTIFICATION,
    Delivery,
    MailTemplate,
    Notify,
    notification_workflow_id,
)
from ttelgo.esim_bundles import alert_details, esims_of
from ttelgo.ledger.accounts import vendor_wallet, wallet_balance
from ttelgo.low_balance import order_debit_crossing
from ttelgo.mail.render import TemplateProblem, render
from ttelgo.mail.smtp import SmtpMailer, describe, is_permanent
from ttelgo.models import (
    Esim,
    Notification,
    NotificationChannel,
    NotificationStatus,
    Order,
    OrderStatus,
    Payment,
    Refund,
    User,
    Vendor,
)
from ttelgo.qr import lpa, qr_png

log = logging.getLogger("ttelgo.notifications")
NOT_FOUND = "NOTIFICATION_NOT_FOUND"


class Unqueueable(ValueError):
    """The records a message needs are missing (or have no recipient): there is nothing to send."""


class NotificationActivities:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        mailer: SmtpMailer | None = None,
        retry_budget_s: int = 6 * 3600,
    ) -> None:
        self.sessions = sessions
        self.mailer = mailer
        self.retry_budget_s = retry_budget_s

    # -- queueing ----------------------------------------------------------------------------------------
    @activity.defn(name=QUEUE_NOTIFICATION)
    async def queue(self, request: Notify) -> None:
        """Writes the row (once per dedupe key) and starts its delivery; both are safe to repeat."""
        try:
            async with self.sessions() as session, session.begin():
                if request.template is MailTemplate.LOW_BALANCE:
                    row = await _queue_order_low_balance(session, request)
                    if row is None:
                        return
                else:
                    row = await queue_notification(session, request)
        except Unqueueable as exc:
            raise ApplicationError(str(exc), type="NOTIFICATION_UNQUEUEABLE", non_retryable=True) from exc
        if row.status is not NotificationStatus.SENT:
            await start_delivery(activity.client(), row.id, activity.info().task_queue, self.retry_budget_s)

    @activity.defn(name=QUEUE_ESIMS_READY)
    async def esims_ready(self, order_id: uuid.UUID) -> None:
        """The row only, as before the Notification workflow existed (replays of older order histories)."""
        async with self.sessions() as session, session.begin():
            await queue_notification(session, Notify(template=MailTemplate.ESIMS_READY, order_id=order_id))

    # -- sending -----------------------------------------------------------------------------------------
    @activity.defn(name=SEND_NOTIFICATION)
    async def send(self, notification_id: uuid.UUID) -> None:
        """Sends the row's message unless it is SENT already, and marks it SENT in the same transaction
        (the row stays locked meanwhile, so two deliveries of one row cannot both send)."""
        assert self.mailer is not None, "no SMTP settings"
        failure: BaseException
        async with self.sessions() as session, session.begin():
            row = await session.get(Notification, notification_id, with_for_update=True)
            if row is None:
                raise ApplicationError("no such notification", type=NOT_FOUND, non_retryable=True)
            if row.status is NotificationStatus.SENT:
                return
            try:
                message = render(
                    row.template,
                    row.payload,
                    to=row.recipient,
                    mail_from=self.mailer.mail_from,
                    notification_id=row.id,
                )
                await self.mailer.send(message)
            except Exception as exc:  # recorded below, in a transaction of its own
                failure = exc
            else:
                row.status, row.sent_at, row.last_error = NotificationStatus.SENT, datetime.now(UTC), None
                row.attempts += 1
                return
        permanent = isinstance(failure, TemplateProblem) or is_permanent(failure)
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(Notification)
                .where(Notification.id == notification_id, Notification.status != NotificationStatus.SENT)
                .values(attempts=Notification.attempts + 1, last_error=str(failure)[:1000])
            )
        log.warning("notification %s not sent: %s", notification_id, describe(failure))
        raise ApplicationError(
            f"not sent: {describe(failure)}", type="MAIL_NOT_SENT", non_retryable=permanent
        ) from None

    @activity.defn(name=FAIL_NOTIFICATION)
    async def fail(self, notification_id: uuid.UUID) -> None:
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(Notification)
                .where(Notification.id == notification_id, Notification.status == NotificationStatus.QUEUED)
                .values(status=NotificationStatus.FAILED)
            )


async def start_delivery(
    client: Any,
    notification_id: uuid.UUID,
    task_queue: str,
    retry_budget_s: int,
    *,
    again: bool = False,
) -> None:
    """Starts `notification-{id}`; a running one is reused, a finished one is only started again when
    `again` (an operator's resend; a completed run otherwise means the message went out)."""
    with contextlib.suppress(WorkflowAlreadyStartedError):  # it ran to completion: the row says how
        await client.start_workflow(
            NOTIFICATION_WORKFLOW,
            Delivery(notification_id=notification_id, retry_budget_s=retry_budget_s),
            id=notification_workflow_id(notification_id),
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE
            if again
            else WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )


async def queue_notification(session: AsyncSession, request: Notify) -> Notification:
    """The outbox row for `request`, written once per dedupe key (returned as stored)."""
    values = await _build(session, request)
    values["dedupe_key"] = dedupe_key(request)
    await session.execute(
        insert(Notification)
        .values(channel=NotificationChannel.EMAIL, template=request.template.value, **values)
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
    )
    row = await session.scalar(select(Notification).where(Notification.dedupe_key == values["dedupe_key"]))
    assert row is not None
    return row


def dedupe_key(request: Notify) -> str:
    """One message per purpose per order, refund, top-up or vendor (the eSIM-ready key predates this)."""
    if request.template is MailTemplate.ESIMS_READY:
        return f"{request.order_id}:esims-ready"
    subject = request.refund_id or request.topup_id or request.order_id or request.vendor_id
    key = f"{subject}:{request.template.value}"
    return f"{key}:{request.occurrence}" if request.occurrence else key


async def _build(session: AsyncSession, request: Notify) -> dict[str, Any]:
    """Recipient, ids and the template's fields, read from the records."""
    template = request.template
    if template is MailTemplate.TOPUP_RECEIPT:
        return await _topup_receipt(session, request)
    if template is MailTemplate.LOW_BALANCE:
        raise Unqueueable("low-balance messages are queued with queue_low_balance()")
    order_id = request.order_id
    if template is MailTemplate.REFUND_SUCCEEDED:
        refund = await _get(session, Refund, request.refund_id)
        order_id = refund.order_id
    order = await _get(session, Order, order_id)
    if order.user_id is None:
        raise Unqueueable(f"order {order.id} has no customer to write to")
    user = await _get(session, User, order.user_id)
    payload: dict[str, Any] = {
        "order_id": str(order.id),
        "bundle_code": order.bundle_code,
        "quantity": order.quantity,
        "total_minor": order.total_minor,
        "currency": order.currency,
    }
    if template is MailTemplate.ESIMS_READY:
        payload["esims"] = await _esims(session, order)
    elif template is MailTemplate.PAYMENT_RECEIPT:
        payment = await session.get(Payment, order.id)
        payload["payment_intent_id"] = payment.provider_payment_id if payment else ""
    elif template is MailTemplate.PAYMENT_FAILED:
        payload["reason"] = order.failure_reason or "the card was declined"
    elif template is MailTemplate.ORDER_CLOSED:
        canceled = order.status is OrderStatus.CANCELED
        payload["closed"] = "canceled" if canceled else "closed"
        payload["why"] = (
            "it was canceled before it was paid"
            if canceled
            else "no payment arrived before its payment window closed"
        )
    elif template is MailTemplate.REFUND_SUCCEEDED:
        payload |= {"refund_id": str(refund.id), "amount_minor": refund.amount_minor}
    elif template in (MailTemplate.ESIM_USAGE, MailTemplate.ESIM_EXPIRING):
        found = await alert_details(session, uuid.UUID(request.occurrence or ""))
        if found is None:
            raise Unqueueable(f"no eSIM alert {request.occurrence}")
        payload |= found[1]
    return {"user_id": user.id, "order_id": order.id, "recipient": user.email, "payload": payload}


async def _esims(session: AsyncSession, order: Order) -> list[dict[str, Any]]:
    """The order's eSIMs; for a top-up, the eSIM its bundle went on."""
    esims = await session.scalars(select(Esim).where(esims_of(order)).order_by(Esim.iccid))
    result = []
    for e in esims:
        code = lpa(e.smdp_address, e.matching_id)
        result.append(
            {
                "iccid": e.iccid,
                "lpa": code,
                "smdp_address": e.smdp_address,
                "matching_id": e.matching_id,
                "qr_png_base64": base64.b64encode(qr_png(code)).decode(),
            }
        )
    return result


async def _topup_receipt(session: AsyncSession, request: Notify) -> dict[str, Any]:
    payment = await _get(session, Payment, request.topup_id)
    assert payment.vendor_id is not None
    vendor = await _get(session, Vendor, payment.vendor_id)
    wallet = await wallet_balance(session, await vendor_wallet(session, vendor.id, payment.currency))
    payload = {
        "topup_id": str(payment.id),
        "vendor_name": vendor.name,
        "amount_minor": payment.amount_minor,
        "available_minor": wallet.available_minor,
        "currency": payment.currency,
    }
    return {"vendor_id": vendor.id, "recipient": vendor.contact_email, "payload": payload}


async def queue_low_balance(
    session: AsyncSession,
    vendor_id: uuid.UUID,
    available_minor: int,
    threshold_minor: int,
    currency: str,
    occurrence: str,
) -> Notification:
    """A low-balance warning to the vendor's contact e-mail (`occurrence` marks the crossing, e.g. the
    transfer that took the wallet under the threshold). The order workflow queues it through
    `notifications.queue` (`Notify(LOW_BALANCE, order_id=…)`); a caller starts the delivery with
    `start_delivery` after its transaction commits."""
    vendor = await _get(session, Vendor, vendor_id)
    request = Notify(template=MailTemplate.LOW_BALANCE, vendor_id=vendor_id, occurrence=occurrence)
    key = dedupe_key(request)
    await session.execute(
        insert(Notification)
        .values(
            dedupe_key=key,
            vendor_id=vendor.id,
            channel=NotificationChannel.EMAIL,
            template=MailTemplate.LOW_BALANCE.value,
            recipient=vendor.contact_email,
            payload={
                "vendor_name": vendor.name,
                "available_minor": available_minor,
                "threshold_minor": threshold_minor,
                "currency": currency,
            },
        )
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
    )
    row = await session.scalar(select(Notification).where(Notification.dedupe_key == key))
    assert row is not None
    return row


async def _queue_order_low_balance(session: AsyncSession, request: Notify) -> Notification | None:
    """The warning for the crossing an order's wallet debit caused (None: it caused none), once per
    crossing: the posting's transfer id marks it."""
    if request.order_id is None:
        raise Unqueueable("a low-balance warning is queued for the order whose debit crossed")
    crossing = await order_debit_crossing(session, order_id=request.order_id)
    if crossing is None:
        return None
    return await queue_low_balance(
        session,
        crossing.vendor_id,
        crossing.available_minor,
        crossing.threshold_minor,
        crossing.currency,
        occurrence=crossing.transfer_id,
    )


async def _get(session: AsyncSession, model: type, key: uuid.UUID | None) -> Any:
    found = await session.get(model, key) if key is not None else None
    if found is None:
        raise Unqueueable(f"no {model.__name__} {key}")
    return found
