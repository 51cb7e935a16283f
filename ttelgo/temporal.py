"""The Temporal client every process builds the same way: pydantic payloads encrypted by the payload codec
(ttelgo.codec), the project's namespace."""

from __future__ import annotations

import logging

from temporalio.client import Client
from temporalio.runtime import Runtime

from ttelgo.codec import data_converter
from ttelgo.settings import Settings

log = logging.getLogger(__name__)


async def connect(settings: Settings, *, lazy: bool = False, runtime: Runtime | None = None) -> Client:
    """`lazy=True` returns at once and connects on first use, so an API can start while Temporal is down."""
    assert settings.temporal_address, "resolve settings first"
    if not settings.temporal_payload_keys:
        # Production refuses to start without keys (missing_for_production); `ttelgo dev` generates one.
        log.warning("TEMPORAL_PAYLOAD_KEYS is unset: Temporal payloads are stored unencrypted")
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(settings.temporal_payload_keys),
        lazy=lazy,
        runtime=runtime,
    )
