"""The dev server keeps its state in SQLite in WAL mode (issue 16), and that state survives a restart."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

from temporalio.client import Client, WorkflowExecutionStatus

from ttelgo.sandbox.processes import free_port
from ttelgo.sandbox.temporal_server import start_temporal


async def test_dev_server_state_is_in_wal_and_survives_a_restart(tmp_path: Path) -> None:
    port, ui_port, workflow_id = free_port(), free_port(), f"wal-{uuid.uuid4()}"
    process = start_temporal(tmp_path / "temporal", port, ui_port, tmp_path / "t1.log")
    try:
        client = await Client.connect(f"127.0.0.1:{port}")
        # No worker polls this queue: the workflow stays open, only the server's state holds it.
        await client.start_workflow("Nobody", id=workflow_id, task_queue=f"none-{uuid.uuid4()}")
    finally:
        process.stop()
    with sqlite3.connect(tmp_path / "temporal" / "temporal.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)

    process = start_temporal(tmp_path / "temporal", port, ui_port, tmp_path / "t2.log")
    try:
        client = await Client.connect(f"127.0.0.1:{port}")
        described = await client.get_workflow_handle(workflow_id).describe()
    finally:
        process.stop()
    assert described.workflow_type == "Nobody" and described.status is WorkflowExecutionStatus.RUNNING
