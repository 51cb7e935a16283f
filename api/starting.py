"""Starting a workflow from a request and waiting for its first answer, atomically (update-with-start).

A retry with the same workflow id finds the running workflow (or, once it has finished, its result), so
a client's retried request never starts a second one. That is what makes the 503 honest: when Temporal
is unreachable, or the workflow does not answer within `API_ACCEPT_TIMEOUT_SECONDS` (no worker polling),
the process may have started but is not confirmed, and the client retries with the same Idempotency-Key.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from fastapi import Request
from temporalio.client import WithStartWorkflowOperation, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import TypedSearchAttributes, WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.problems import Outage, outage_of, unavailable
from ttelgo.errors import AppError

R = TypeVar("R")
NOT_CONFIRMED = "started but not confirmed yet; retry with the same Idempotency-Key"
# Temporal refusing the request itself: a bug on our side, never worth a retry (500).
_OUR_FAULT = {
    RPCStatusCode.INVALID_ARGUMENT,
    RPCStatusCode.UNIMPLEMENTED,
    RPCStatusCode.PERMISSION_DENIED,
    RPCStatusCode.UNAUTHENTICATED,
}


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
    timeout = request.app.state.settings.api_accept_timeout_seconds
    try:
        try:
            answer = await asyncio.wait_for(
                client.execute_update_with_start_workflow(
                    update, start_workflow_operation=start, rpc_timeout=timedelta(seconds=timeout)
                ),
                timeout + 1,  # the SDK's own retries of an unreachable server stay within this too
            )
            return await start.workflow_handle(), answer
        except (WorkflowAlreadyStartedError, WorkflowUpdateFailedError):
            # A retried request for a workflow that has already finished: its result says how it went.
            handle = client.get_workflow_handle(workflow_id, result_type=result_type)
            result = await asyncio.wait_for(handle.result(), timeout)
            return handle, from_result(result)
    except AppError:
        raise
    except Exception as exc:
        _retrieve_start_error(start)
        # Update timed out (no worker polling), Temporal unreachable, or the server gave up on the call.
        outage = outage_of(exc)
        if outage is None and isinstance(exc, RPCError) and exc.status not in _OUR_FAULT:
            outage = Outage("SERVICE_UNAVAILABLE", "Temporal", 2)  # e.g. closed between start and update
        if outage is None:
            raise
        raise unavailable(outage, NOT_CONFIRMED) from exc


def _retrieve_start_error(start: WithStartWorkflowOperation) -> None:
    """The SDK also puts a failed call's error on the start operation's future, which nobody awaits here:
    mark it retrieved, or asyncio logs "Future exception was never retrieved" for every outage."""
    future = getattr(start, "_workflow_handle", None)
    if isinstance(future, asyncio.Future) and future.done() and not future.cancelled():
        future.exception()
