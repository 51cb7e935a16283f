"""Stripe webhook events: verified on the raw body, reduced to what our workflows act on."""

from __future__ import annotations

import json
from typing import Any

import stripe
from pydantic import BaseModel

SIGNATURE_TOLERANCE_S = 300
# What the workflows act on; anything else is recorded and acknowledged.
PAYMENT_EVENTS = frozenset(
    {
        "payment_intent.processing",
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
        "payment_intent.canceled",
    }
)
# `charge.refunded` names no refund: it reaches the order's workflow (via the payments row), which keeps
# it as history; the refund workflow acts on `refund.*`, which carry the refund id it follows.
REFUND_EVENTS = frozenset({"charge.refunded", "refund.updated", "refund.failed"})


class StripeEventError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class PaymentEvent(BaseModel):
    """One Stripe event as a workflow sees it; `event_id` makes redeliveries recognisable."""

    event_id: str
    type: str
    created: int
    intent_id: str | None
    refund_id: str | None = None
    status: str | None = None
    amount_minor: int | None = None
    currency: str | None = None
    workflow_id: str | None = None
    failure_message: str | None = None

    @property
    def handled(self) -> bool:
        return self.type in PAYMENT_EVENTS or self.type in REFUND_EVENTS


def verify_event(raw: bytes, signature: str | None, secret: str) -> dict[str, Any]:
    """The event's JSON once `Stripe-Signature` matches and is at most five minutes old."""
    if not signature:
        raise StripeEventError("WEBHOOK_SIGNATURE_INVALID", "the Stripe-Signature header is missing")
    try:
        stripe.WebhookSignature.verify_header(raw.decode(), signature, secret, SIGNATURE_TOLERANCE_S)
    except (stripe.SignatureVerificationError, UnicodeDecodeError) as exc:
        raise StripeEventError("WEBHOOK_SIGNATURE_INVALID", str(exc)) from exc
    try:
        event = json.loads(raw)
    except ValueError as exc:
        raise StripeEventError("WEBHOOK_PAYLOAD_INVALID", "the body is not JSON") from exc
    if not isinstance(event, dict) or not isinstance(event.get("id"), str) or "type" not in event:
        raise StripeEventError("WEBHOOK_PAYLOAD_INVALID", "not a Stripe event (id and type missing)")
    return event


def parse_event(event: dict[str, Any]) -> PaymentEvent:
    try:
        return _parse(event)
    except (ValueError, TypeError, AttributeError) as exc:  # pydantic's ValidationError is a ValueError
        raise StripeEventError("WEBHOOK_PAYLOAD_INVALID", f"unexpected event shape: {exc}") from exc


def _parse(event: dict[str, Any]) -> PaymentEvent:
    obj = (event.get("data") or {}).get("object") or {}
    kind = obj.get("object")
    metadata = obj.get("metadata") or {}
    failure = (obj.get("last_payment_error") or {}).get("message") or obj.get("failure_reason")
    amount = obj.get("amount_refunded") if kind == "charge" else obj.get("amount")
    return PaymentEvent(
        event_id=event["id"],
        type=str(event["type"]),
        created=int(event.get("created") or 0),
        intent_id=obj.get("id") if kind == "payment_intent" else obj.get("payment_intent"),
        refund_id=obj.get("id") if kind == "refund" else None,
        status=obj.get("status"),
        amount_minor=amount if isinstance(amount, int) else None,
        currency=str(obj["currency"]).upper() if obj.get("currency") else None,
        workflow_id=metadata.get("workflow_id") if isinstance(metadata, dict) else None,
        failure_message=str(failure)[:500] if failure else None,
    )
