"""`ttelgo workflows replay` and `export` against the session's Temporal dev server: today's code replays
its own (encrypted) histories, a changed workflow is caught as nondeterminism, exported files replay."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

from temporalio import activity, workflow
from temporalio.client import WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from tests.conftest import TEST_DATA_CONVERTER
from tests.support.esimgo import SimHandle
from tests.support.stack import running_worker, stack_settings
from ttelgo import replay, temporal
from ttelgo.codec import is_encrypted
from ttelgo.sandbox.stack import DEV_SECRETS
from ttelgo.settings import Settings
from workflows.catalogue_sync import CatalogueSyncWorkflow
from workflows.registry import WORKFLOWS

TTELGO = Path(sys.executable).parent / "ttelgo"


@activity.defn(name="ReplayProbeChore")
async def chore() -> str:
    return "done"


@workflow.defn(name="CatalogueSync", sandboxed=False)  # defined beside subprocess calls
class ChangedCatalogueSync:
    """The catalogue sync as a careless change would leave it: another activity in place of the sync."""

    @workflow.run
    async def run(self) -> str:
        return await workflow.execute_activity(chore, start_to_close_timeout=timedelta(seconds=10))


async def ttelgo(settings: Settings, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **settings.service_env(), "COLUMNS": "300"}
    return await asyncio.to_thread(
        subprocess.run, [str(TTELGO), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


async def run_catalogue_sync(settings: Settings, env: WorkflowEnvironment) -> str:
    workflow_id = f"catalogue-sync-replay-{uuid.uuid4()}"
    async with running_worker(settings, env.client):
        await env.client.execute_workflow(
            CatalogueSyncWorkflow.run, id=workflow_id, task_queue=settings.temporal_task_queue
        )
    return workflow_id


async def test_todays_code_replays_and_a_changed_workflow_is_nondeterminism(
    database_url: str,
    temporal_env: WorkflowEnvironment,
    esimgo_sim: SimHandle,
    task_queue: str,
    tmp_path: Path,
) -> None:
    settings = stack_settings(database_url, temporal_env.client, esimgo_sim, task_queue)
    workflow_id = await run_catalogue_sync(settings, temporal_env)
    history = await temporal_env.client.get_workflow_handle(workflow_id).fetch_history()
    completed = history.events[-1].workflow_execution_completed_event_attributes
    assert is_encrypted(completed.result.payloads[0])  # so the replay below decodes through the codec

    result = await ttelgo(settings, tmp_path, "workflows", "replay", "--workflow-id", workflow_id)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{workflow_id}  {history.run_id}  CatalogueSync  OK" in result.stdout
    assert "1 histories replayed, all deterministic" in result.stdout

    # The core the command wraps, given the changed class in place of the registry's.
    client = await temporal.connect(settings)  # the converter the command and the worker build
    selection = replay.Selection(workflow_ids=[workflow_id])
    [same] = [outcome async for outcome in replay.replay(client, WORKFLOWS, selection)]
    assert same.verdict == "OK"
    [changed] = [outcome async for outcome in replay.replay(client, [ChangedCatalogueSync], selection)]
    assert (changed.workflow_id, changed.workflow_type, changed.verdict) == (
        workflow_id,
        "CatalogueSync",
        "NONDETERMINISM",
    )
    assert "ReplayProbeChore" in str(changed.failure)


async def test_a_history_the_code_on_disk_would_not_repeat_fails_the_command(
    database_url: str,
    temporal_env: WorkflowEnvironment,
    esimgo_sim: SimHandle,
    task_queue: str,
    tmp_path: Path,
) -> None:
    """The other way round: a history written by another version of the workflow (what a deploy meets)."""
    settings = stack_settings(database_url, temporal_env.client, esimgo_sim, task_queue)
    client = temporal_env.client
    workflow_id = f"catalogue-sync-replay-{uuid.uuid4()}"
    async with Worker(client, task_queue=task_queue, workflows=[ChangedCatalogueSync], activities=[chore]):
        await client.execute_workflow(ChangedCatalogueSync.run, id=workflow_id, task_queue=task_queue)

    result = await ttelgo(settings, tmp_path, "workflows", "replay", "--query", f"WorkflowId='{workflow_id}'")
    assert result.returncode == 1, result.stdout + result.stderr
    [line] = [line for line in result.stdout.splitlines() if line.startswith(workflow_id)]
    assert "CatalogueSync  NONDETERMINISM: " in line
    assert (
        "Activity type of scheduled event 'ReplayProbeChore' does not match" in line
    )  # the reason, unwrapped
    assert "1 of 1 histories failed to replay" in result.stdout


async def test_nothing_matched_is_exit_2_and_says_so(
    database_url: str,
    temporal_env: WorkflowEnvironment,
    esimgo_sim: SimHandle,
    task_queue: str,
    tmp_path: Path,
) -> None:
    settings = stack_settings(database_url, temporal_env.client, esimgo_sim, task_queue)
    query = f"WorkflowId='nothing-{uuid.uuid4()}'"
    result = await ttelgo(settings, tmp_path, "workflows", "replay", "--query", query)
    assert (result.returncode, result.stdout.strip().splitlines()[-1]) == (
        2,
        f'no workflow matched query "{query}"',
    )
    unknown = await ttelgo(settings, tmp_path, "workflows", "replay", "--workflow-id", "nothing-here")
    assert unknown.returncode == 2
    assert "no workflow 'nothing-here'" in unknown.stdout
    malformed = await ttelgo(settings, tmp_path, "workflows", "replay", "--query", "WorkflowType=((")
    assert malformed.returncode == 2 and "Temporal refused" in malformed.stdout, malformed.stdout
    assert "Traceback" not in malformed.stdout + malformed.stderr


async def test_exported_histories_replay_as_the_replay_test_reads_them(
    database_url: str,
    temporal_env: WorkflowEnvironment,
    esimgo_sim: SimHandle,
    task_queue: str,
    tmp_path: Path,
) -> None:
    settings = stack_settings(database_url, temporal_env.client, esimgo_sim, task_queue)
    workflow_id = await run_catalogue_sync(settings, temporal_env)
    out = tmp_path / "histories"
    result = await ttelgo(
        settings, tmp_path, "workflows", "export", "--workflow-id", workflow_id, "--out", str(out)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    [path] = out.glob("*.json")
    assert (
        path.name == f"catalogue_sync_{workflow_id}.json"
    )  # kind `catalogue`, as tests/test_replay.py counts
    # As tests/test_replay.py loads and replays its files.
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    replayed = await Replayer(workflows=WORKFLOWS, data_converter=TEST_DATA_CONVERTER).replay_workflow(
        history, raise_on_replay_failure=False
    )
    assert replayed.replay_failure is None
    assert len(history.events) > 5  # the whole run: started, the activity, completed


async def test_on_a_dev_stack_the_command_reads_the_key_ttelgo_dev_generated(
    database_url: str,
    temporal_env: WorkflowEnvironment,
    esimgo_sim: SimHandle,
    task_queue: str,
    tmp_path: Path,
) -> None:
    settings = stack_settings(database_url, temporal_env.client, esimgo_sim, task_queue)
    workflow_id = await run_catalogue_sync(settings, temporal_env)
    # As `make run` leaves it: the key only in the data dir's dev-secrets.json, not in the environment.
    (tmp_path / DEV_SECRETS).write_text(json.dumps({"temporal_payload_keys": settings.temporal_payload_keys}))
    env = {**os.environ, **settings.service_env(), "TTELGO_DATA_DIR": str(tmp_path), "COLUMNS": "300"}
    env.pop("TEMPORAL_PAYLOAD_KEYS")
    result = await asyncio.to_thread(
        subprocess.run,
        [str(TTELGO), "workflows", "replay", "--workflow-id", workflow_id],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 histories replayed, all deterministic" in result.stdout
