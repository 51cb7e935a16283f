"""Stripe webhook events: verified on the raw body, reduced to what our workflows act on."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import stripe
from pydantic import BaseModel, Field, StringConstraints

SIGNATURE_TOLERANCE_S = 300
"""How old a signature may be, and how far ahead of our clock (a sender's clock may run a little fast)."""
INT64_MAX = 2**63 - 1
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


_ONE_LINE = r"^[^\x00-\x1f\x7f]*$"
# Each as long as the column it is stored in (webhook_events, payments, refunds).
_StripeId = Annotated[str, StringConstraints(max_length=255, pattern=_ONE_LINE)]
_EventType = Annotated[str, StringConstraints(max_length=100, pattern=_ONE_LINE)]
_WorkflowId = Annotated[str, StringConstraints(max_length=200, pattern=_ONE_LINE)]
_Status = Annotated[str, StringConstraints(max_length=64, pattern=_ONE_LINE)]
_Currency = Annotated[str, StringConstraints(max_length=3, pattern=_ONE_LINE)]


class PaymentEvent(BaseModel):
    """One Stripe event as a workflow sees it; `event_id` makes redeliveries recognisable. Every field fits
    the column it ends up in: an event that does not is refused (400) here, not by the database (a 500
    Stripe redelivers for days) or by an activity (retried for ever)."""

    event_id: _StripeId
    type: _EventType
    created: int = Field(ge=0, le=INT64_MAX)
    intent_id: _StripeId | None
    refund_id: _StripeId | None = None
    status: _Status | None = None
    amount_minor: int | None = Field(default=None, ge=0, le=INT64_MAX)
    currency: _Currency | None = None
    workflow_id: _WorkflowId | None = None
    failure_message: str | None = None

    @property
    def handled(self) -> bool:
        return self.type in PAYMENT_EVENTS or self.type in REFUND_EVENTS


def verify_event(raw: bytes, signature: str | None, secret: str) -> dict[str, Any]:
    """The event's JSON once `Stripe-Signature` matches and is at most five minutes old (or ahead)."""
    if not signature:
        raise StripeEventError("WEBHOOK_SIGNATURE_INVALID", "the Stripe-Signature header is missing")
    try:
        stripe.WebhookSignature.verify_header(raw.decode(), signature, secret, SIGNATURE_TOLERANCE_S)
    except (stripe.SignatureVerificationError, UnicodeDecodeError) as exc:
        raise StripeEventError("WEBHOOK_SIGNATURE_INVALID", str(exc)) from exc
    # Stripe's check bounds only the age: a signature dated ahead would stay replayable until then.
    if _signed_at(signature) > time.time() + SIGNATURE_TOLERANCE_S:
        raise StripeEventError("WEBHOOK_SIGNATURE_INVALID", "the signature is dated in the future")
    try:
        event = json.loads(raw)
    except ValueError as exc:
        raise StripeEventError("WEBHOOK_PAYLOAD_INVALID", "the body is not JSON") from exc
    if not isinstance(event, dict) or not isinstance(event.get("id"), str) or "type" not in event:
        raise StripeEventError("WEBHOOK_PAYLOAD_INVALID", "not a Stripe event (id and type missing)")
    if _holds_nul(event):  # PostgreSQL's jsonb cannot store it
        raise StripeEventError("WEBHOOK_PAYLOAD_INVALID", "the event contains a NUL character")
    return event


def _signed_at(signature: str) -> int:
    """The `t=` of a header `verify_header` has accepted (so it is there, and a number)."""
    return max(int(v) for k, _, v in (item.partition("=") for item in signature.split(",")) if k == "t")


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False


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


def storable(event: dict[str, Any]) -> dict[str, Any]:
    """The event as we keep it in `webhook_events`: without the PaymentIntent's client secret, which lets
    whoever reads it confirm the payment and is never needed after the event is handled."""
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(data, dict) or not isinstance(obj, dict) or "client_secret" not in obj:
        return event
    return {
        **event,
        "data": {**event["data"], "object": {k: v for k, v in obj.items() if k != "client_secret"}},
    }
