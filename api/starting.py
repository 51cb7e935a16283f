"""Starting a workflow from a request and waiting for its first answer, atomically (update-with-start).

A retry with the same workflow id finds the running workflow (or, once it has finished, its result), so
a client's retried request never starts a second one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import Request
from temporalio.client import WithStartWorkflowOperation, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import TypedSearchAttributes, WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from ttelgo.errors import AppError

FIRST_ANSWER_TIMEOUT_S = 30
R = TypeVar("R")


async def start_with_update(
    request: Request,
    run: Any,
    arg: Any,
    *,
    workflow_id: str,
    update: Any,
    from_result: Callable[[Any], R],
    result_type: type,
    search_attributes: TypedSearchAttributes | None = None,
) -> tuple[WorkflowHandle, R]:
    """`from_result` turns the finished workflow's result into the update's answer (for late retries)."""
    client = request.app.state.temporal
    start = WithStartWorkflowOperation(
        run,
        arg,
        id=workflow_id,
        task_queue=request.app.state.settings.temporal_task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        search_attributes=search_attributes,
    )
    try:
        answer = await asyncio.wait_for(
            client.execute_update_with_start_workflow(update, start_workflow_operation=start),
            FIRST_ANSWER_TIMEOUT_S,
        )
        return await start.workflow_handle(), answer
    except (WorkflowAlreadyStartedError, WorkflowUpdateFailedError):
        # A retried request for a workflow that has already finished: its result says how it went.
        handle = client.get_workflow_handle(workflow_id, result_type=result_type)
        return handle, from_result(await handle.result())
    except (TimeoutError, RPCError, RuntimeError) as exc:  # RuntimeError: the lazy client cannot connect
        raise AppError(
            "SERVICE_UNAVAILABLE",
            "accepted but not confirmed yet; retry with the same Idempotency-Key",
            headers={"Retry-After": "2"},
        ) from exc
