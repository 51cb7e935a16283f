"""What a Temporal server needs before the API and the worker use it: the namespace and the search attributes
the workflows upsert (a start carrying an unknown one is refused). `ttelgo temporal setup` runs these, then
the worker's schedules; each step leaves what already fits alone, so the command can run on every deploy."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from datetime import timedelta

from google.protobuf.duration_pb2 import Duration
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from ttelgo import temporal
from ttelgo.settings import Settings

# A namespace just registered is unknown to the frontend until its namespace cache refreshes (about a second
# on the dev server); the search attributes wait for it this long.
NAMESPACE_PROPAGATION = timedelta(seconds=30)


class SetupError(RuntimeError):
    """Temporal cannot be set up as TTelGo needs; the message says why and what to do."""


async def connect(settings: Settings, wait: timedelta) -> Client:
    """The project's client, retrying for `wait` while the server is still starting (compose starts both)."""
    deadline = asyncio.get_running_loop().time() + wait.total_seconds()
    while True:
        try:
            return await temporal.connect(settings)
        except RuntimeError as exc:  # the SDK's "Failed client connect: …"
            if asyncio.get_running_loop().time() >= deadline:
                raise SetupError(f"cannot reach Temporal at {settings.temporal_address}: {exc}") from exc
            await asyncio.sleep(1)


def _days(duration: Duration) -> str:
    return f"{duration.ToTimedelta() / timedelta(days=1):g} days"


async def ensure_namespace(client: Client, retention: timedelta) -> str:
    """Registers the client's namespace with `retention` when it is missing; an existing one is left as it
    is. Says which."""
    service = client.workflow_service
    try:
        found = await service.describe_namespace(DescribeNamespaceRequest(namespace=client.namespace))
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
    else:
        return f"exists (retention {_days(found.config.workflow_execution_retention_ttl)})"
    kept = Duration()
    kept.FromTimedelta(retention)
    try:
        await service.register_namespace(
            RegisterNamespaceRequest(namespace=client.namespace, workflow_execution_retention_period=kept)
        )
    except RPCError as exc:
        if exc.status != RPCStatusCode.ALREADY_EXISTS:
            raise
        return "exists (registered meanwhile by someone else)"
    return f"created (retention {_days(kept)})"


def indexed_value_type(kind: str) -> IndexedValueType.ValueType:
    """`Keyword`, `KeywordList`, `Datetime`… (the Temporal CLI's names) as the API's enum."""
    return IndexedValueType.Value("INDEXED_VALUE_TYPE_" + re.sub(r"(?<!^)(?=[A-Z])", "_", kind).upper())


def _kind(value: IndexedValueType.ValueType) -> str:
    return "".join(
        part.title() for part in IndexedValueType.Name(value).removeprefix("INDEXED_VALUE_TYPE_").split("_")
    )


async def _custom_attributes(client: Client) -> Mapping[str, IndexedValueType.ValueType]:
    """The namespace's custom search attributes, waiting out the propagation of a namespace just created."""
    request = ListSearchAttributesRequest(namespace=client.namespace)
    deadline = asyncio.get_running_loop().time() + NAMESPACE_PROPAGATION.total_seconds()
    while True:
        try:
            return (await client.operator_service.list_search_attributes(request)).custom_attributes
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND or asyncio.get_running_loop().time() >= deadline:
                raise
            await asyncio.sleep(0.2)


async def ensure_search_attributes(client: Client, wanted: Mapping[str, str]) -> dict[str, str]:
    """Registers each of `wanted` (name → type) that the namespace lacks. One that exists with another type
    is an error: the workflows' upserts would be refused, and a search attribute's type cannot change."""
    existing = await _custom_attributes(client)
    clashes = [
        f"{name} is {_kind(existing[name])}, TTelGo needs {kind}"
        for name, kind in wanted.items()
        if name in existing and existing[name] != indexed_value_type(kind)
    ]
    if clashes:
        raise SetupError(
            f"search attributes of namespace {client.namespace!r} clash: {'; '.join(clashes)}. "
            "Remove them (`temporal operator search-attribute remove`) or use another namespace."
        )
    missing = {name: indexed_value_type(kind) for name, kind in wanted.items() if name not in existing}
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=client.namespace, search_attributes=missing)
        )
    return {name: f"{kind}, {'registered' if name in missing else 'exists'}" for name, kind in wanted.items()}
