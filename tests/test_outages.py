"""Honest outages: a dependency that is down answers 503 problem+json with Retry-After (never 500), an
accepted order answers 202 with its Location, and reads of live progress never hang on Temporal.

Real PostgreSQL and Temporal throughout; an outage is a closed port, a task queue no worker polls, or a
Temporal dev server of the test's own that is stopped (and started again on the same state).
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import create_async_engine
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.testing import WorkflowEnvironment

from api.order_views import LIVE_PROGRESS_DEADLINE
from api.problems import Outage, outage_of
from tests.b2b.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, B2B, VendorHandle
from tests.b2c.conftest import B2C, b2c, localstripe  # noqa: F401  (fixtures for the cancel test)
from tests.conftest import TEST_DATA_CONVERTER
from tests.support.esimgo import SimHandle
from tests.support.stack import api_client, running_worker, stack_settings
from ttelgo.admins import ensure_admin
from ttelgo.db import session_factory
from ttelgo.models import Order
from ttelgo.order_invariants import check_order_invariants
from ttelgo.sandbox.processes import free_port
from ttelgo.sandbox.temporal_server import WAL_PRAGMAS, temporal_cli
from ttelgo.settings import SEARCH_ATTRIBUTES

PROBLEM_JSON = "application/problem+json"
ACCEPT_TIMEOUT_S = 2.0  # the shortened API_ACCEPT_TIMEOUT_SECONDS


def assert_unavailable(response: httpx.Response, code: str = "SERVICE_UNAVAILABLE") -> dict[str, Any]:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    assert int(response.headers["Retry-After"]) > 0
    body = response.json()
    assert body["code"] == code and body["status"] == 503 and body["request_id"], body
    return body


@asynccontextmanager
async def b2b_world(
    database_url: str, temporal: Client, sim: SimHandle, task_queue: str, **extra: object
) -> AsyncIterator[B2B]:
    """A B2B world with no worker (tests run one when they want it) and a short accept timeout."""
    settings = stack_settings(
        database_url, temporal, sim, task_queue, api_accept_timeout_seconds=ACCEPT_TIMEOUT_S, **extra
    )
    engine = create_async_engine(database_url)
    sessions = session_factory(engine)
    async with sessions() as session:
        await ensure_admin(session, ADMIN_EMAIL, ADMIN_PASSWORD)
    try:
        async with api_client(settings) as api:
            login = await api.post(
                "/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
            )
            assert login.status_code == 200, login.text
            admin = {"Authorization": f"Bearer {login.json()['access_token']}"}
            world = B2B(api, settings, sessions, temporal, sim, admin)
            yield world
            async with sessions() as session:
                assert await check_order_invariants(session) == []
            assert await world.invariants() == [], "ledger invariants broken by this test"
    finally:
        await engine.dispose()


async def order_count(world: B2B) -> int:
    async with world.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Order)) or 0)


async def wait_for_status(world: B2B, vendor: VendorHandle, order_id: str, *statuses: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        response = await world.api.get(f"/api/v1/vendor/orders/{order_id}", headers=vendor.headers)
        body = response.json()
        if body.get("status") in statuses or time.monotonic() > deadline:
            assert body.get("status") in statuses, body
            return body
        await asyncio.sleep(0.2)


async def stored_status(world: B2B, order_id: str) -> str | None:
    async with world.sessions() as session:
        order = await session.get(Order, uuid.UUID(order_id))
        return order.status.value if order else None


# -- PostgreSQL and Temporal unreachable ----------------------------------------------------------------


async def test_database_down_at_the_api_key_lookup_is_503(temporal_env: WorkflowEnvironment) -> None:
    from tests.conftest import make_settings

    settings = make_settings(
        database_url=f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nowhere",
        temporal_address=temporal_env.client.service_client.config.target_host,
    )
    key = {"X-API-Key": "ttg_0123456789ab_" + "s" * 32}
    async with api_client(settings) as api:  # app exceptions would be raised here, not hidden in a 500
        body = assert_unavailable(await api.get("/api/v1/vendor/orders", headers=key))
        assert body["dependency"] == "database"
        created = await api.post(
            "/api/v1/vendor/orders",
            json={"bundle_code": "esim_1GB_7D_FR_V2", "quantity": 1},
            headers={**key, "Idempotency-Key": str(uuid.uuid4())},
        )
        assert_unavailable(created)
        ready = await api.get("/readyz")
        assert ready.status_code == 503 and int(ready.headers["Retry-After"]) > 0


async def test_temporal_down_at_order_creation_is_503_and_the_key_stays_usable(
    synced_database_url: str, temporal_env: WorkflowEnvironment, esimgo_sim: SimHandle, task_queue: str
) -> None:
    async with b2b_world(synced_database_url, temporal_env.client, esimgo_sim, task_queue) as world:
        vendor = await world.new_vendor(balance=50_000)
        no_temporal = world.settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})
        key = str(uuid.uuid4())
        async with api_client(no_temporal) as api:
            response = await api.post(
                "/api/v1/vendor/orders",
                json={"bundle_code": "esim_1GB_7D_FR_V2", "quantity": 1},
                headers={**vendor.headers, "Idempotency-Key": key},
            )
            body = assert_unavailable(response)
            assert "same Idempotency-Key" in body["detail"]
        assert await order_count(world) == 0
        # Temporal back: the same key places the order (the failed attempt did not keep the key).
        async with running_worker(world.settings, world.temporal):
            retried = await world.order(vendor, key=key, wait=15)
            assert retried.status_code == 201, retried.text
            assert retried.json()["status"] == "COMPLETED"
        assert await order_count(world) == 1
        assert (await world.wallet(vendor))["balance_minor"] == 50_000 - retried.json()["total_minor"]


# -- the worker stalled -----------------------------------------------------------------------------------


async def test_stalled_worker_gives_503_then_the_same_key_gives_the_one_order(
    synced_database_url: str, temporal_env: WorkflowEnvironment, esimgo_sim: SimHandle, task_queue: str
) -> None:
    async with b2b_world(synced_database_url, temporal_env.client, esimgo_sim, task_queue) as world:
        vendor = await world.new_vendor(balance=50_000)
        key = str(uuid.uuid4())
        started = time.monotonic()
        stalled = await world.order(vendor, key=key, wait=0)  # nobody polls the task queue
        elapsed = time.monotonic() - started
        body = assert_unavailable(stalled)
        assert "same Idempotency-Key" in body["detail"]
        assert ACCEPT_TIMEOUT_S <= elapsed < ACCEPT_TIMEOUT_S + 10, elapsed
        async with running_worker(world.settings, world.temporal):
            retried = await world.order(vendor, key=key, wait=15)
            assert retried.status_code in (201, 202), retried.text
            order_id = retried.json()["id"]
            assert retried.headers["Location"] == f"/api/v1/vendor/orders/{order_id}"
            done = await wait_for_status(world, vendor, order_id, "COMPLETED")
            replayed = await world.order(vendor, key=key, wait=15)
            assert replayed.headers.get("Idempotent-Replayed") == "true"
        assert await order_count(world) == 1
        assert esimgo_sim.stats()["orders"]["transactions"] == 1
        assert len(done["esims"]) == 1
        assert (await world.wallet(vendor))["balance_minor"] == 50_000 - done["total_minor"]


async def test_reading_a_running_order_with_no_worker_answers_from_the_record(
    synced_database_url: str, temporal_env: WorkflowEnvironment, esimgo_sim: SimHandle, task_queue: str
) -> None:
    async with b2b_world(synced_database_url, temporal_env.client, esimgo_sim, task_queue) as world:
        vendor = await world.new_vendor(balance=50_000)
        esimgo_sim.faults(**{"POST /orders": {"error_rate": 1.0, "error_status": 503}})  # keeps retrying
        async with running_worker(world.settings, world.temporal):
            accepted = await world.order(vendor, wait=0)
            assert accepted.status_code == 202, accepted.text
            order_id = accepted.json()["id"]
            running = await wait_for_status(world, vendor, order_id, "PROVISIONING")
            assert running["progress"] is not None  # with a worker, the live progress is there
        # The worker is gone: the status query would wait for one; the read must not.
        started = time.monotonic()
        read = await world.api.get(
            f"/api/v1/vendor/orders/{order_id}", headers=vendor.headers, timeout=httpx.Timeout(10)
        )
        assert read.status_code == 200, read.text
        assert time.monotonic() - started < LIVE_PROGRESS_DEADLINE.total_seconds() + 3
        assert read.json()["status"] == "PROVISIONING" and read.json()["progress"] is None
        esimgo_sim.admin.delete("/faults").raise_for_status()
        async with running_worker(world.settings, world.temporal):
            await wait_for_status(world, vendor, order_id, "COMPLETED")


# -- Temporal lost while ?wait waits ---------------------------------------------------------------------


async def own_temporal(port: int, db_file: Path) -> WorkflowEnvironment:
    """A Temporal dev server of this test's own, its state in `db_file` so a restart finds it again."""
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli(),
        port=port,
        data_converter=TEST_DATA_CONVERTER,
        search_attributes=[SearchAttributeKey.for_keyword(name) for name in SEARCH_ATTRIBUTES],
        ui=False,
        dev_server_extra_args=[
            "--db-filename",
            str(db_file),
            "--metrics-port",
            str(free_port()),
            *WAL_PRAGMAS,  # as the dev stack runs it
        ],
    )


async def first_order_id(world: B2B) -> str | None:
    async with world.sessions() as session:
        found = await session.scalar(select(Order.id))
    return str(found) if found else None


async def accepted(temporal: Client, order_id: str) -> bool:
    """Whether the server has the order's acceptance (the answer the API waits for before it waits for the
    eSIMs). The PROVISIONING row alone does not say so: the worker writes it from a local activity before
    the workflow task that completes the update reaches the server."""
    history = await temporal.get_workflow_handle(f"order-{order_id}").fetch_history()
    return any(
        e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED for e in history.events
    )


async def test_temporal_lost_while_waiting_answers_202_with_location(
    synced_database_url: str, esimgo_sim: SimHandle, task_queue: str
) -> None:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="ttelgo-temporal-") as folder:
        db_file = Path(folder) / "temporal.db"
        temporal = await own_temporal(port, db_file)
        try:
            async with b2b_world(synced_database_url, temporal.client, esimgo_sim, task_queue) as world:
                vendor = await world.new_vendor(balance=50_000)
                # The supplier is down, so the order stays PROVISIONING while the request waits.
                esimgo_sim.faults(**{"POST /orders": {"error_rate": 1.0, "error_status": 503}})
                async with running_worker(world.settings, temporal.client):
                    key = str(uuid.uuid4())
                    waiting = asyncio.create_task(world.order(vendor, key=key, wait=25))
                    deadline = time.monotonic() + 15
                    order_id = await first_order_id(world)
                    while (
                        order_id is None
                        or await stored_status(world, order_id) != "PROVISIONING"
                        or not await accepted(temporal.client, order_id)
                    ):
                        assert time.monotonic() < deadline and not waiting.done()
                        await asyncio.sleep(0.2)
                        order_id = await first_order_id(world)
                    await asyncio.sleep(0.5)  # the server's answer on its way back to the API
                    await temporal.shutdown()  # Temporal goes away mid-wait, after the acceptance
                    started = time.monotonic()
                    response = await asyncio.wait_for(waiting, 40)
                    assert response.status_code == 202, response.text
                    assert response.headers["Location"] == f"/api/v1/vendor/orders/{order_id}"
                    assert response.json()["status"] == "PROVISIONING"
                    assert response.json()["progress"] is None
                    assert time.monotonic() - started < 30
                    # Reading the order meanwhile answers from the record, and quickly.
                    started = time.monotonic()
                    read = await world.api.get(
                        f"/api/v1/vendor/orders/{order_id}", headers=vendor.headers, timeout=10
                    )
                    assert read.status_code == 200 and read.json()["status"] == "PROVISIONING"
                    assert time.monotonic() - started < 10
                    # Temporal back on the same state: the order carries on and completes, once.
                    temporal = await own_temporal(port, db_file)
                    esimgo_sim.admin.delete("/faults").raise_for_status()
                    done = await wait_for_status(world, vendor, order_id, "COMPLETED")
                    replayed = await world.order(vendor, key=key, wait=25)
                    assert replayed.status_code == 202 and replayed.headers["Idempotent-Replayed"] == "true"
                assert await order_count(world) == 1
                assert esimgo_sim.stats()["orders"]["transactions"] == 1
                assert (await world.wallet(vendor))["balance_minor"] == 50_000 - done["total_minor"]
        finally:
            with contextlib.suppress(Exception):
                await temporal.shutdown()


# -- cancel after the workflow has closed ----------------------------------------------------------------


async def test_cancel_of_an_unpaid_order_whose_workflow_closed_is_409(b2c: B2C) -> None:  # noqa: F811
    customer = await b2c.customer()
    created = await b2c.order(customer)
    assert created.status_code == 201, created.text
    order = created.json()
    assert order["status"] == "PAYMENT_PENDING"
    await b2c.temporal.get_workflow_handle(f"order-{order['id']}").terminate(reason="test: workflow lost")
    started = time.monotonic()
    refused = await b2c.api.post(f"/api/v1/orders/{order['id']}/cancel", headers=customer.headers)
    assert time.monotonic() - started < 10
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "ORDER_INVALID_STATE"
    assert "PAYMENT_PENDING" in refused.json()["detail"] and "TERMINATED" in refused.json()["detail"]


# -- what counts as an outage ------------------------------------------------------------------------------


async def test_a_dropped_database_connection_is_an_outage_and_a_bug_is_not(database_url: str) -> None:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as victim, engine.connect() as killer:
            pid = await victim.scalar(text("SELECT pg_backend_pid()"))
            await killer.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            with pytest.raises(Exception) as dropped:
                await victim.execute(text("SELECT 1"))
        assert outage_of(dropped.value) == Outage("SERVICE_UNAVAILABLE", "database")
        async with engine.connect() as conn:
            with pytest.raises(Exception) as bad_sql:
                await conn.execute(text("SELECT * FROM no_such_table"))
        assert outage_of(bad_sql.value) is None  # our mistake: stays a 500
    finally:
        await engine.dispose()
    assert outage_of(RuntimeError("secret internal detail")) is None
    assert outage_of(KeyError("x")) is None
