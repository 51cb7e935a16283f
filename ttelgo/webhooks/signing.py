"""Standard Webhooks signatures (`webhook-id`, `webhook-timestamp`, `webhook-signature`), made by the
`standardwebhooks` library so any vendor library verifies them."""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"
ROTATION_OVERLAP_HOURS = 24  # after a rotation the previous secret keeps signing this long


def new_secret() -> str:
    """`whsec_` + base64 of 32 random bytes (what Standard Webhooks libraries expect)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def signing_secrets(
    current: str | None, previous: str | None, previous_expires_at: datetime | None, now: datetime
) -> list[str]:
    """The current secret, plus the previous one while its overlap lasts."""
    found = [current] if current else []
    if previous and previous_expires_at and previous_expires_at > now:
        found.append(previous)
    return found


def sign_headers(msg_id: str, body: str, secrets_: list[str], at: datetime | None = None) -> dict[str, str]:
    """The three headers for one attempt: one `v1,` signature per secret, space separated."""
    at = at or datetime.now(UTC)
    signatures = " ".join(Webhook(s).sign(msg_id, at, body) for s in secrets_)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signatures,
        "content-type": "application/json",
        "user-agent": "TTelGo-Webhooks/1.0",
    }
