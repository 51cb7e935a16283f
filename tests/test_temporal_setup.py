"""`ttelgo temporal setup` on a Temporal server started bare (no `--search-attribute`), as docker-compose's
server is: orders are refused before it runs and work after; running it again changes nothing."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from google.protobuf.duration_pb2 import Duration
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from tests.conftest import TEST_DATA_CONVERTER, make_settings
from tests.support.esimgo import SimHandle
from tests.support.stack import running_worker
from tests.test_outages import b2b_world  # the B2B world on a Temporal server of a test's own
from ttelgo.sandbox.processes import free_port
from ttelgo.sandbox.temporal_server import temporal_cli
from ttelgo.settings import SEARCH_ATTRIBUTES
from worker import SCHEDULE_IDS
from workflows.order import BUNDLE_NAME, CHANNEL, ORDER_ID, ORDER_STATUS, VENDOR_ID

KEYS = (ORDER_ID, ORDER_STATUS, CHANNEL, VENDOR_ID, BUNDLE_NAME)
TTELGO = Path(sys.executable).parent / "ttelgo"


@pytest.fixture
async def bare_temporal() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server of the test's own, with no search attribute registered."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli(),
        port=free_port(),
        data_converter=TEST_DATA_CONVERTER,
        ui=False,
        dev_server_extra_args=["--metrics-port", str(free_port())],
    )
    try:
        yield env
    finally:
        await env.shutdown()


async def ttelgo(
    *args: str, address: str, namespace: str = "default", queue: str = "setup-test"
) -> subprocess.CompletedProcess[str]:
    """The installed `ttelgo` command, configured through the environment as docker-compose configures it."""
    settings = make_settings(
        temporal_address=address,
        temporal_namespace=namespace,
        temporal_task_queue=queue,
        esimgo_task_queue=f"{queue}-esimgo",
    ).resolved()
    env = {**os.environ, **settings.service_env(), "COLUMNS": "200"}
    return await asyncio.to_thread(
        subprocess.run, [str(TTELGO), *args], env=env, capture_output=True, text=True, timeout=120
    )


async def start_order_style(client: Client, queue: str) -> str:
    """A start carrying the order search attributes (nothing polls `queue`; it is terminated after)."""
    handle = await client.start_workflow(
        "Order",
        id=f"order-{uuid.uuid4()}",
        task_queue=queue,
        search_attributes=TypedSearchAttributes([SearchAttributePair(key, "x") for key in KEYS]),
    )
    await handle.terminate()
    return handle.id


async def custom_attributes(client: Client, namespace: str) -> dict[str, int]:
    request = ListSearchAttributesRequest(namespace=namespace)
    return dict((await client.operator_service.list_search_attributes(request)).custom_attributes)


async def test_setup_makes_a_bare_server_take_orders_and_is_idempotent(
    bare_temporal: WorkflowEnvironment,
) -> None:
    client = bare_temporal.client
    address = client.service_client.config.target_host
    with pytest.raises(RPCError) as refused:
        await start_order_style(client, "setup-test")
    assert refused.value.status == RPCStatusCode.INVALID_ARGUMENT
    assert "no mapping defined for search attribute" in refused.value.message

    first = await ttelgo("temporal", "setup", address=address)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "namespace default: exists" in first.stdout
    for name in SEARCH_ATTRIBUTES:
        assert f"search attribute {name} (Keyword, registered)" in first.stdout
    second = await ttelgo("temporal", "setup", address=address)
    assert second.returncode == 0, second.stdout + second.stderr
    for name in SEARCH_ATTRIBUTES:
        assert f"search attribute {name} (Keyword, exists)" in second.stdout

    registered = await custom_attributes(client, "default")
    keyword = IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
    assert {name: registered.get(name) for name in SEARCH_ATTRIBUTES} == dict.fromkeys(
        SEARCH_ATTRIBUTES, keyword
    )
    for schedule_id in SCHEDULE_IDS:
        described = await client.get_schedule_handle(schedule_id).describe()
        assert described.schedule.action.task_queue == "setup-test"  # type: ignore[union-attr]
        assert f"schedule {schedule_id}" in second.stdout

    await start_order_style(client, "setup-test")  # no longer refused


async def test_after_setup_a_vendor_order_completes_on_the_bare_server(
    bare_temporal: WorkflowEnvironment, synced_database_url: str, esimgo_sim: SimHandle, task_queue: str
) -> None:
    client = bare_temporal.client
    setup = await ttelgo("temporal", "setup", address=client.service_client.config.target_host)
    assert setup.returncode == 0, setup.stdout + setup.stderr
    async with b2b_world(synced_database_url, client, esimgo_sim, task_queue) as world:
        vendor = await world.new_vendor(balance=50_000)
        async with running_worker(world.settings, client):
            response = await world.order(vendor, wait=25)
        assert response.status_code == 201, response.text
        assert response.json()["status"] == "COMPLETED"
        described = await client.get_workflow_handle(f"order-{response.json()['id']}").describe()
        assert described.typed_search_attributes.get(ORDER_STATUS) == "COMPLETED"


async def test_setup_creates_a_missing_namespace_with_its_retention(
    bare_temporal: WorkflowEnvironment,
) -> None:
    client = bare_temporal.client
    namespace = f"ops-{uuid.uuid4().hex[:8]}"
    result = await ttelgo(
        "temporal",
        "setup",
        "--retention-days",
        "7",
        address=client.service_client.config.target_host,
        namespace=namespace,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"namespace {namespace}: created (retention 7 days)" in result.stdout
    described = await client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace=namespace)
    )
    assert described.config.workflow_execution_retention_ttl.ToTimedelta() == timedelta(days=7)
    assert set(SEARCH_ATTRIBUTES) <= set(await custom_attributes(client, namespace))


async def test_a_search_attribute_of_another_type_fails_setup_with_the_reason(
    bare_temporal: WorkflowEnvironment,
) -> None:
    client = bare_temporal.client
    namespace = f"clash-{uuid.uuid4().hex[:8]}"
    await client.workflow_service.register_namespace(
        RegisterNamespaceRequest(
            namespace=namespace, workflow_execution_retention_period=Duration(seconds=86_400)
        )
    )
    text = IndexedValueType.INDEXED_VALUE_TYPE_TEXT
    request = AddSearchAttributesRequest(namespace=namespace, search_attributes={"OrderId": text})
    for _ in range(100):  # the new namespace reaches the frontend's cache within a second or so
        try:
            await client.operator_service.add_search_attributes(request)
            break
        except RPCError as exc:
            assert exc.status == RPCStatusCode.NOT_FOUND
            await asyncio.sleep(0.2)
    result = await ttelgo(
        "temporal", "setup", address=client.service_client.config.target_host, namespace=namespace
    )
    assert result.returncode == 1
    assert "OrderId is Text, TTelGo needs Keyword" in result.stdout
    assert "Channel" not in await custom_attributes(client, namespace)  # nothing registered half-way


async def test_unreachable_temporal_is_a_clear_failure() -> None:
    address = f"127.0.0.1:{free_port()}"
    result = await ttelgo("temporal", "setup", "--wait", "0", address=address)
    assert result.returncode == 1
    assert f"cannot reach Temporal at {address}" in result.stdout
