"""The Temporal client every process builds the same way: pydantic payloads, the project's namespace."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime

from ttelgo.settings import Settings


async def connect(settings: Settings, *, lazy: bool = False, runtime: Runtime | None = None) -> Client:
    """`lazy=True` returns at once and connects on first use, so an API can start while Temporal is down."""
    assert settings.temporal_address, "resolve settings first"
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
        lazy=lazy,
        runtime=runtime,
    )
