"""An order's timeline for operators: what the database recorded and what the workflow histories say
(state changes, steps run on a task queue with their attempts and errors, signals and updates), in time
order. Local activities (the short database and ledger steps) leave only markers and are not listed.
Error messages are stored encrypted (ttelgo.codec); the client's data converter decrypts them here."""

from __future__ import annotations

import json
from datetime import UTC
from typing import Any

from cryptography.exceptions import InvalidTag
from temporalio.api.common.v1 import Payloads
from temporalio.api.enums.v1 import EventType
from temporalio.api.failure.v1 import Failure
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client
from temporalio.converter import DataConverter
from temporalio.service import RPCError

from activities.contracts import ANSWER_SIGNAL, PLACE_SUPPLIER_BATCH, LineOutcome, PurchaseAnswer
from api.schemas.admin_orders import TimelineEntry
from ttelgo.models import AuditLog, Order, Refund


def database_entries(order: Order, refunds: list[Refund], audit: list[AuditLog]) -> list[TimelineEntry]:
    entries = [TimelineEntry(at=order.created_at, source="database", event="order created")]
    if order.paid_at:
        entries.append(TimelineEntry(at=order.paid_at, source="database", event="paid"))
    if order.completed_at:
        entries.append(TimelineEntry(at=order.completed_at, source="database", event="completed"))
    for r in refunds:
        detail = {"refund_id": str(r.id), "amount_minor": r.amount_minor}
        entries.append(
            TimelineEntry(at=r.created_at, source="database", event="refund requested", detail=detail)
        )
        if r.settled_at:
            event = f"refund {r.status.value.lower()}"
            entries.append(TimelineEntry(at=r.settled_at, source="database", event=event, detail=detail))
    entries += [
        TimelineEntry(
            at=a.created_at,
            source="audit",
            event=a.action,
            detail={"actor": f"{a.actor_type}:{a.actor_id}", "reason": a.reason},
        )
        for a in audit
    ]
    return entries


async def workflow_entries(client: Client, workflow_id: str) -> list[TimelineEntry]:
    """Empty when the history cannot be read (Temporal down, or the history is past retention)."""
    try:
        history = await client.get_workflow_handle(workflow_id).fetch_history()
    except (RPCError, RuntimeError):  # RuntimeError: the lazy client cannot connect
        return []
    entries = []
    scheduled: dict[int, str] = {}
    for event in history.events:
        entry = await _entry(event, scheduled, client.data_converter)
        if entry is not None:
            name, detail = entry
            entries.append(
                TimelineEntry(
                    at=event.event_time.ToDatetime(tzinfo=UTC),
                    source="workflow",
                    event=name,
                    detail={"workflow_id": workflow_id, **detail},
                )
            )
    return entries


async def _entry(
    event: HistoryEvent, scheduled: dict[int, str], converter: DataConverter
) -> tuple[str, dict[str, Any]] | None:
    kind = event.event_type
    if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
        return "workflow started", {}
    if kind == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
        fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
        if "OrderStatus" in fields:
            return "status", {"status": json.loads(fields["OrderStatus"].data)}
        return None
    if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
        name = event.activity_task_scheduled_event_attributes.activity_type.name
        scheduled[event.event_id] = name
        return "step scheduled", {"step": name}
    if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
        started = event.activity_task_started_event_attributes
        detail: dict[str, Any] = {
            "step": scheduled.get(started.scheduled_event_id),
            "attempt": started.attempt,
        }
        if started.HasField("last_failure"):
            detail["last_error"] = await _message(started.last_failure, converter)
        return "step started", detail
    if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED:
        failed = event.activity_task_failed_event_attributes
        return "step failed", {
            "step": scheduled.get(failed.scheduled_event_id),
            "error": await _message(failed.failure, converter),
        }
    if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
        signaled = event.workflow_execution_signaled_event_attributes
        if signaled.signal_name == ANSWER_SIGNAL:
            return await _purchase_answer(signaled.input, converter)
        return "signal", {"name": signaled.signal_name}
    if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
        name = event.workflow_execution_update_accepted_event_attributes.accepted_request.input.name
        return "update", {"name": name}
    if kind == EventType.EVENT_TYPE_TIMER_FIRED:
        return "timer fired", {}
    if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
        return "workflow completed", {}
    if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
        failure = event.workflow_execution_failed_event_attributes.failure
        return "workflow failed", {"error": await _message(failure, converter)}
    return None


async def _purchase_answer(payloads: Payloads, converter: DataConverter) -> tuple[str, dict[str, Any]]:
    """The supplier batcher's answer: the order's supplier step ran in the batcher's workflow, so its
    failure shows here as the order's own would."""
    try:
        [answer] = await converter.decode(payloads.payloads, [PurchaseAnswer])
    except (ValueError, InvalidTag):  # a key no longer configured
        return "signal", {"name": ANSWER_SIGNAL}
    outcome: LineOutcome = answer.outcome
    if outcome.ref is not None:
        return "signal", {
            "name": ANSWER_SIGNAL,
            "supplier_order": outcome.ref.reference,
            "line": outcome.ref.line,
        }
    return "step failed", {"step": PLACE_SUPPLIER_BATCH, "error": f"{outcome.code}: {outcome.reason}"}


async def _message(failure: Failure, converter: DataConverter) -> str:
    """The failure's own message, decrypted; the stored text when no configured key opens it."""
    copy = Failure()
    copy.CopyFrom(failure)  # decoding works in place; the history stays as fetched
    try:
        error = await converter.decode_failure(copy)
    except (ValueError, InvalidTag):  # a key no longer configured: show what Temporal holds
        return failure.message
    return getattr(error, "message", str(error))
