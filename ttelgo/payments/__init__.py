"""Card payments through Stripe: the gateway our activities call and the webhook events it sends back."""

from ttelgo.payments.events import PaymentEvent, StripeEventError, parse_event, storable, verify_event
from ttelgo.payments.gateway import IntentMissing, IntentRef, PaymentDeclined, RefundRef, StripeGateway

__all__ = [
    "IntentMissing",
    "IntentRef",
    "PaymentDeclined",
    "PaymentEvent",
    "RefundRef",
    "StripeEventError",
    "StripeGateway",
    "parse_event",
    "storable",
    "verify_event",
]
