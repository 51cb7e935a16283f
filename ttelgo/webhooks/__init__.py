"""Outbound vendor webhooks (Standard Webhooks): secrets and signatures, URL safety, the event catalogue."""

from ttelgo.webhooks.events import EVENT_TYPES, WebhookEventType, event_body, subscribed
from ttelgo.webhooks.signing import new_secret, sign_headers, signing_secrets
from ttelgo.webhooks.urls import UnsafeWebhookUrl, check_url, check_url_resolves

__all__ = [
    "EVENT_TYPES",
    "UnsafeWebhookUrl",
    "WebhookEventType",
    "check_url",
    "check_url_resolves",
    "event_body",
    "new_secret",
    "sign_headers",
    "signing_secrets",
    "subscribed",
]
