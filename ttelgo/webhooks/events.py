"""The event catalogue and the body every event is sent as: `{"type", "timestamp", "data"}`."""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import Any


class WebhookEventType(StrEnum):
    ORDER_COMPLETED = "order.completed"
    ORDER_FAILED = "order.failed"
    ORDER_REFUNDED = "order.refunded"
    REFUND_SUCCEEDED = "refund.succeeded"
    REFUND_FAILED = "refund.failed"
    TOPUP_COMPLETED = "topup.completed"
    TOPUP_FAILED = "topup.failed"
    WALLET_LOW_BALANCE = "wallet.low_balance"
    ESIM_USAGE_THRESHOLD = "esim.usage_threshold"  # a bundle crossed 80 % or 100 % of its data
    ESIM_EXPIRING = "esim.expiring"  # a bundle expires within a day
    PING = "ping"


EVENT_TYPES = tuple(t.value for t in WebhookEventType)


def subscribed(events: list[str] | None, event_type: str) -> bool:
    """NULL subscribes to everything; a `ping` (asked for by the vendor) always goes out."""
    return events is None or event_type == WebhookEventType.PING or event_type in events


def event_body(event_type: str, occurred_at: datetime, data: dict[str, Any]) -> dict[str, Any]:
    return {"type": event_type, "timestamp": occurred_at.isoformat().replace("+00:00", "Z"), "data": data}


def serialize(body: dict[str, Any]) -> str:
    """The exact text that is signed and sent: the same bytes on every attempt."""
    return json.dumps(body, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
