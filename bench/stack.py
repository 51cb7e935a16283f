"""What every benchmark starts the same way: its command line, and the local stack (embedded PostgreSQL,
Temporal dev servers, API processes) in one temporary directory, stopped in reverse order on exit."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import httpx

from ttelgo import migrate
from ttelgo.sandbox.postgres import ensure_database, start_postgres
from ttelgo.sandbox.processes import ManagedProcess, free_port, wait_until
from ttelgo.sandbox.temporal_server import start_temporal

ROOT = Path(__file__).resolve().parent.parent
API_SERVE = (sys.executable, "-m", "api.serve")  # as users run it


def parser(doc: str | None, *, concurrency: int, rounds: int | None = None) -> argparse.ArgumentParser:
    """The module docstring as help, `--concurrency` and, given a default, `--rounds`; each bench adds the
    size of one run (`--seconds`, `--orders`, …) itself."""
    parsed = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parsed.add_argument("--concurrency", type=int, default=concurrency)
    if rounds is not None:
        parsed.add_argument("--rounds", type=int, default=rounds)
    return parsed


def http_load_parser(doc: str | None, *, concurrency: int = 32) -> argparse.ArgumentParser:
    """For benches that load an API from `bench.loadgen` client processes, and can serve it from another
    checkout to compare before and after."""
    parsed = parser(doc, concurrency=concurrency, rounds=2)
    parsed.add_argument("--seconds", type=float, default=8)
    parsed.add_argument("--clients", type=int, default=2, help="load generator processes")
    parsed.add_argument(
        "--api-root",
        type=Path,
        default=ROOT,
        help="serve the API from another checkout (e.g. `git archive` of an older commit): before/after",
    )
    return parsed


class Stack:
    """The processes one benchmark run starts, their data and logs under `work`."""

    def __init__(self) -> None:
        self.work = Path(tempfile.mkdtemp(prefix="ttelgo-bench-"))
        self.processes: list[ManagedProcess] = []

    def __enter__(self) -> Stack:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        for process in reversed(self.processes):
            process.stop()

    def add(self, process: ManagedProcess) -> ManagedProcess:
        self.processes.append(process)
        return process

    def postgres(self) -> str:
        """Embedded PostgreSQL with its default (durable) settings and a migrated `ttelgo` database: its URL."""
        port = free_port()
        database_url = f"postgresql+asyncpg://postgres@127.0.0.1:{port}/ttelgo"
        self.add(start_postgres(self.work / "pg", port, self.work / "postgres.log"))
        asyncio.run(ensure_database(port, "ttelgo"))
        migrate.upgrade(database_url)
        return database_url

    def temporal(self, name: str = "temporal", *, wal: bool = True) -> tuple[int, ManagedProcess]:
        """A Temporal dev server, as the dev stack starts it: its port and process."""
        port = free_port()
        process = start_temporal(self.work / name, port, free_port(), self.work / f"{name}.log", wal=wal)
        return port, self.add(process)

    def start(
        self, name: str, command: Sequence[str], env: dict[str, str], root: Path = ROOT
    ) -> ManagedProcess:
        return self.add(ManagedProcess(name, list(command), self.work / f"{name}.log", env, root).start())

    def api(
        self, name: str, env: dict[str, str], *, root: Path = ROOT, ready: str | None = "/readyz"
    ) -> tuple[str, ManagedProcess]:
        """`python -m api.serve` on a free port: its base URL and process, once `ready` answers 200 (with
        `ready=None`, at once: wait with `wait_ready` after starting the others)."""
        port = free_port()
        process = self.start(name, API_SERVE, {**env, "API_PORT": str(port)}, root)
        base = f"http://127.0.0.1:{port}"
        if ready:
            wait_ready(base, process, ready)
        return base, process


def wait_ready(base: str, process: ManagedProcess, path: str = "/readyz") -> None:
    wait_until(
        lambda: httpx.get(f"{base}{path}").status_code == 200, 60, f"waiting for {base}{path}", process
    )


def api_env(database_url: str, temporal_port: int | None = None, **settings: str) -> dict[str, str]:
    """The API's (and worker's) environment; without a Temporal port, an address never reached (for routes
    that need no Temporal)."""
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port or free_port()}",
        "JWT_SECRET": "bench-secret",
        "LOG_LEVEL": "WARNING",
        **settings,
    }
