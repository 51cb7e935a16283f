"""Recorded histories of every workflow type, replayed against today's workflow code.

A change that would make a running workflow take a different path on replay (non-determinism) fails
here before it can break live executions. The histories were recorded from the end-to-end B2B, B2C,
top-up, catalogue, usage, housekeeping and invoicing flows; record new ones when a workflow changes on purpose (and
version the change). B2C, top-up and refund histories: `TTELGO_RECORD_HISTORIES=<name> pytest tests/b2c -k <test>`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from tests.conftest import TEST_DATA_CONVERTER
from workflows.registry import WORKFLOWS

HISTORIES = {p.stem: p.read_text() for p in sorted((Path(__file__).parent / "histories").glob("*.json"))}


def test_every_workflow_type_has_a_recorded_history() -> None:
    recorded = {name.split("_")[0] for name in HISTORIES}
    assert recorded == {
        "order",
        "catalogue",
        "esim",
        "topup",
        "refund",
        "reconciliation",
        "notification",
        "webhook",
        "housekeeping",
        "supplier",
        "invoicing",
    }
    assert len(WORKFLOWS) == 14


@pytest.mark.parametrize("name", sorted(HISTORIES))
async def test_history_replays(name: str) -> None:
    history = WorkflowHistory.from_json(name, HISTORIES[name])
    # The suite's codec: histories recorded before it are plain and pass through, newer ones decrypt.
    replayer = Replayer(workflows=WORKFLOWS, data_converter=TEST_DATA_CONVERTER)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{name}: {result.replay_failure}"
