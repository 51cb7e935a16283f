"""Workflow histories from a Temporal server, replayed against the workflow code on disk: the check before
deploying a worker change (`ttelgo workflows replay`), and saved as replay fixtures (`ttelgo workflows
export`).

The caller passes the workflow classes and takes the data converter from its client, so the replay runs
exactly what the worker would (the CLI passes `workflows.registry.WORKFLOWS`; a test, a changed class).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client, WorkflowHistory
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError


class NoSuchWorkflow(LookupError):
    pass


@dataclass(frozen=True)
class Selection:
    """Which histories: the given workflow ids (their latest runs), else up to `limit` executions matching
    `query` (Temporal's visibility syntax, e.g. `WorkflowType='Order'`; None: any)."""

    query: str | None = None
    workflow_ids: Sequence[str] = ()
    limit: int = 100


async def fetch_histories(client: Client, selection: Selection) -> AsyncIterator[WorkflowHistory]:
    for workflow_id in selection.workflow_ids:
        try:
            yield await client.get_workflow_handle(workflow_id).fetch_history()
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            raise NoSuchWorkflow(f"no workflow {workflow_id!r} in namespace {client.namespace!r}") from exc
    if selection.workflow_ids:
        return
    async for execution in client.list_workflows(selection.query, limit=selection.limit):
        yield await client.get_workflow_handle(execution.id, run_id=execution.run_id).fetch_history()


def workflow_type(history: WorkflowHistory) -> str:
    return history.events[0].workflow_execution_started_event_attributes.workflow_type.name


@dataclass(frozen=True)
class ReplayOutcome:
    workflow_id: str
    run_id: str
    workflow_type: str
    failure: Exception | None

    @property
    def reason(self) -> str:
        """Why the replay failed, without the SDK core's wrapping (`Failure { message: "…", … }`)."""
        text = str(self.failure or "")
        found = re.search(r'message: "((?:[^"\\]|\\.)*)"', text)
        return found.group(1) if found else text

    @property
    def verdict(self) -> str:
        if self.failure is None:
            return "OK"
        return "NONDETERMINISM" if isinstance(self.failure, NondeterminismError) else "FAILED"


async def replay(
    client: Client, workflows: Sequence[type], selection: Selection
) -> AsyncIterator[ReplayOutcome]:
    """Each selected history replayed with `workflows` and the client's data converter (so encrypted
    payloads decode), as it finishes."""
    replayer = Replayer(workflows=workflows, data_converter=client.data_converter)
    async with replayer.workflow_replay_iterator(fetch_histories(client, selection)) as results:
        async for result in results:
            history = result.history
            yield ReplayOutcome(
                history.workflow_id, history.run_id, workflow_type(history), result.replay_failure
            )


def file_name(history: WorkflowHistory) -> str:
    """`<type in snake case>_<workflow id>.json`, e.g. `catalogue_sync_catalogue-sync.json`: the part before
    the first `_` is the kind tests/test_replay.py counts."""
    kind = re.sub(r"(?<!^)(?=[A-Z])", "_", workflow_type(history)).lower()
    return f"{kind}_{re.sub(r'[^A-Za-z0-9.-]+', '-', history.workflow_id)}.json"


def save(history: WorkflowHistory, folder: Path) -> Path:
    """Writes `history` as `WorkflowHistory.to_json()` into `folder`, payloads as stored: encrypted ones stay
    encrypted, and replay only with the keys that wrote them."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / file_name(history)
    path.write_text(history.to_json())
    return path
