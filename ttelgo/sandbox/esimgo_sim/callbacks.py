"""Usage callbacks v3 (eSIM Go → us): JSON body, HMAC-SHA256 of the raw bytes keyed by the API key."""

import asyncio
import base64
import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from typing import Any

import httpx

from . import views
from .state import UsageEvent

SIGNATURE_HEADER = "X-Signature-SHA256"
logger = logging.getLogger(__name__)


def sign(body: bytes, key: str) -> str:
    return base64.b64encode(hmac.new(key.encode(), body, hashlib.sha256).digest()).decode()


def build_payload(event: UsageEvent) -> dict[str, Any]:
    return {
        "iccid": event.iccid,
        "alertType": event.alert_type.value,
        "bundle": views.alert_bundle(event.assignment),
    }


@dataclass
class Delivery:
    alert_type: str
    threshold: int | None
    url: str | None
    status: int | None  # last HTTP status seen, None if never answered
    attempts: int
    delivered: bool
    error: str | None
    payload: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        return {
            "alertType": self.alert_type,
            "threshold": self.threshold,
            "status": self.status,
            "attempts": self.attempts,
            "delivered": self.delivered,
            "error": self.error,
        }


class CallbackSender:
    def __init__(self, api_key: str, attempts: int, backoff_s: float, timeout_s: float) -> None:
        self.api_key = api_key
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s

    async def send_all(self, url: str | None, events: list[UsageEvent]) -> list[Delivery]:
        """Deliver in order (FirstUse before Utilisation), each with its own retries; never raises."""
        if not events:
            return []
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            return [await self._send(client, url, event) for event in events]

    async def _send(self, client: httpx.AsyncClient, url: str | None, event: UsageEvent) -> Delivery:
        payload = build_payload(event)
        delivery = Delivery(event.alert_type.value, event.threshold, url, None, 0, False, None, payload)
        if not url:
            delivery.error = "no callback URL configured"
            return delivery
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, self.api_key)}
        for attempt in range(1, self.attempts + 1):
            delivery.attempts = attempt
            try:
                response = await client.post(url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                delivery.status, delivery.error = None, f"{type(exc).__name__}: {exc}"
            else:
                delivery.status = response.status_code
                if response.is_success:
                    delivery.delivered, delivery.error = True, None
                    return delivery
                delivery.error = f"HTTP {response.status_code}"
                if response.status_code < 500 and response.status_code != 429:
                    return delivery  # a 4xx will not improve by retrying
            if attempt < self.attempts:
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
        logger.warning(
            "callback %s to %s failed after %d attempts: %s",
            delivery.alert_type,
            url,
            delivery.attempts,
            delivery.error,
        )
        return delivery
