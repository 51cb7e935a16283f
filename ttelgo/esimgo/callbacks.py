"""eSIM Go usage callbacks (v3): signature check and mapping to our domain type."""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

_ONE_LINE = r"^[^\x00-\x1f\x7f]*$"
INT64_MAX = 2**63 - 1
# Bounded by the columns they meet (esims.iccid, webhook_events.event_type, esims.bundle_name, BIGINT byte
# counts): a signed callback that does not fit is refused (400), never an activity retried for ever.
_Iccid = Annotated[str, StringConstraints(min_length=1, max_length=22, pattern=_ONE_LINE)]
_Name = Annotated[str, StringConstraints(max_length=100, pattern=_ONE_LINE)]
_Reference = Annotated[str, StringConstraints(max_length=255, pattern=_ONE_LINE)]
_Bytes = Annotated[int, Field(ge=0, le=INT64_MAX)]


class UsageCallback(BaseModel):
    model_config = ConfigDict(frozen=True)

    iccid: _Iccid
    alert_type: _Name  # Utilisation, FirstUse, CountryChange, LowBalance
    bundle_name: _Name | None
    bundle_reference: _Reference | None
    initial_bytes: _Bytes | None
    remaining_bytes: _Bytes | None
    unlimited: bool
    start_time: datetime | None
    end_time: datetime | None


class InvalidCallback(ValueError):
    pass


def verify_signature(raw_body: bytes, signature: str | None, api_key: str) -> bool:
    """HMAC-SHA256 of the raw body keyed with the API key, sent base64 (hex also accepted)."""
    if not signature:
        return False
    expected = hmac.new(api_key.encode(), raw_body, hashlib.sha256).digest()
    signature = signature.strip()
    candidates = []
    with contextlib.suppress(binascii.Error, ValueError):
        candidates.append(base64.b64decode(signature, validate=True))
    with contextlib.suppress(ValueError):
        candidates.append(bytes.fromhex(signature))
    return any(hmac.compare_digest(expected, c) for c in candidates)


def _when(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None
    except ValueError:
        return None


def parse_usage_callback(raw_body: bytes) -> UsageCallback:
    try:
        payload = json.loads(raw_body)
        bundle = payload.get("bundle") or {}
        return UsageCallback(
            iccid=str(payload["iccid"]),
            alert_type=str(payload["alertType"]),
            bundle_name=bundle.get("name"),
            bundle_reference=bundle.get("reference"),
            initial_bytes=bundle.get("initialQuantity"),
            remaining_bytes=bundle.get("remainingQuantity"),
            unlimited=bool(bundle.get("unlimited", False)),
            start_time=_when(bundle.get("startTime")),
            end_time=_when(bundle.get("endTime")),
        )
    except (ValueError, KeyError, TypeError, AttributeError, ValidationError) as exc:
        raise InvalidCallback(f"not an eSIM Go usage callback: {exc}") from exc
