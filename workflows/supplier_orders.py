"""The supplier batcher (`supplier-orders-{supplier queue}`), one per supplier account.

Order workflows ask it for their purchase; it buys what is waiting as one multi-line eSIM Go order, a line
per order and at most MAX_BATCH_BUNDLES bundles (eSIM Go answers those at once), and signals each order its
own line's answer. Batches form by themselves: while `max_in_flight` calls are out (the supplier queue's
pacing holds them back), requests wait and go together in the next call; a lone order goes at once.

Exactly-once stays with the purchase activity (the call is recorded on the orders' rows before it is
sent, and an order that gave up closes its row to purchases first). A call eSIM Go refuses outright is
split: each of its orders is sent again alone, so one bad line fails only its own order. A call that spent
its budget (the earliest of its orders') fails the orders whose budget is spent; the others wait for the
next call. Each order compensates for itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any
from uuid import UUID

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from activities.contracts import (
        ANSWER_SIGNAL,
        BATCH_REFUSED,
        MAX_BATCH_BUNDLES,
        PLACE_SUPPLIER_BATCH,
        PURCHASE_SIGNAL,
        SUPPLIER_BATCHER_WORKFLOW,
        BatcherState,
        BatcherStatus,
        LineOutcome,
        PurchaseAnswer,
        PurchaseRequest,
        SupplierBatch,
    )
    from workflows.order import MIN_STEP_BUDGET, SUPPLIER_RETRIES, failure_reason

BUDGET_SPENT = "SUPPLIER_UNAVAILABLE"  # failure_reason's code for a supplier step that spent its budget


@workflow.defn(name=SUPPLIER_BATCHER_WORKFLOW)
class SupplierOrdersWorkflow:
    @workflow.init
    def __init__(self, state: BatcherState) -> None:
        self._state = state
        self._waiting: list[PurchaseRequest] = list(state.waiting)
        self._alone: set[UUID] = set(state.alone)  # requests of a refused call: each is sent on its own
        self._known = {r.request_id for r in self._waiting}  # seen in this run: a repeat is ignored
        self._in_flight = 0
        self._answered = 0
        self._tasks: set[asyncio.Task[None]] = set()  # calls and answers not finished yet

    @workflow.signal(name=PURCHASE_SIGNAL)
    def purchase(self, request: PurchaseRequest) -> None:
        if request.request_id in self._known:
            return
        self._known.add(request.request_id)
        # An order asks again (a new run of it, after its last one gave up): its newest request stands.
        self._waiting = [r for r in self._waiting if r.order_id != request.order_id]
        if len(self._waiting) >= self._state.max_waiting:
            why = f"{len(self._waiting)} orders wait for the supplier already"
            self._start(
                self._answer(request, LineOutcome(order_id=request.order_id, code="BUSY", reason=why))
            )
            return
        self._waiting.append(request)

    @workflow.query
    def status(self) -> BatcherStatus:
        return BatcherStatus(waiting=len(self._waiting), in_flight=self._in_flight, answered=self._answered)

    @workflow.run
    async def run(self, state: BatcherState) -> None:
        while True:
            try:
                await workflow.wait_condition(self._can_send, timeout=timedelta(seconds=state.idle_s))
            except TimeoutError:
                if not self._waiting and not self._tasks:
                    return
                continue
            if self._renewing:
                await workflow.wait_condition(lambda: not self._tasks)
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    state.model_copy(
                        update={
                            "waiting": self._waiting,
                            "alone": [r.request_id for r in self._waiting if r.request_id in self._alone],
                        }
                    )
                )
            batch = self._next_batch()
            if batch:
                self._in_flight += 1
                self._start(self._buy(batch))

    @property
    def _renewing(self) -> bool:
        return self._answered >= self._state.answers_per_run or workflow.info().is_continue_as_new_suggested()

    def _can_send(self) -> bool:
        return self._renewing or (bool(self._waiting) and self._in_flight < self._state.max_in_flight)

    def _next_batch(self) -> list[PurchaseRequest]:
        """The oldest request, and those after it while they fit in one synchronous supplier order. A
        request whose order's budget is spent while it waited is answered so instead."""
        now = workflow.now()
        for late in [r for r in self._waiting if r.deadline <= now]:
            self._waiting.remove(late)
            outcome = LineOutcome(
                order_id=late.order_id,
                code=BUDGET_SPENT,
                reason="gave up after waiting for the supplier for the whole budget",
                final=True,
            )
            self._start(self._answer(late, outcome))
        if not self._waiting:
            return []
        batch = [self._waiting.pop(0)]
        bundles = batch[0].quantity
        while (
            batch[0].request_id not in self._alone
            and self._waiting
            and self._waiting[0].request_id not in self._alone
            and bundles + self._waiting[0].quantity <= MAX_BATCH_BUNDLES
        ):
            bundles += self._waiting[0].quantity
            batch.append(self._waiting.pop(0))
        return batch

    def _start(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _buy(self, batch: list[PurchaseRequest]) -> None:
        try:
            answers = await self._place(batch)
        finally:
            self._in_flight -= 1
        await asyncio.gather(*(self._answer(r, o) for r, o in answers))

    async def _place(self, batch: list[PurchaseRequest]) -> list[tuple[PurchaseRequest, LineOutcome]]:
        """The answers this call gives; requests it cannot answer go back to wait for another call."""
        try:
            outcomes = await workflow.execute_activity(
                PLACE_SUPPLIER_BATCH,
                SupplierBatch(batch_id=workflow.uuid4(), order_ids=[r.order_id for r in batch]),
                result_type=list[LineOutcome],
                task_queue=self._state.supplier_task_queue,
                start_to_close_timeout=timedelta(seconds=60),
                schedule_to_close_timeout=max(
                    min(r.deadline for r in batch) - workflow.now(), MIN_STEP_BUDGET
                ),
                heartbeat_timeout=timedelta(seconds=10),
                retry_policy=SUPPLIER_RETRIES,
            )
            return list(zip(batch, outcomes, strict=True))
        except ActivityError as failure:
            refused = isinstance(failure.cause, ApplicationError) and failure.cause.type == BATCH_REFUSED
            if refused:
                workflow.logger.warning("supplier refused a call of %d orders: each goes alone", len(batch))
                self._alone.update(r.request_id for r in batch)
                self._requeue(batch)
                return []
            code, reason = failure_reason(failure)
            spent = [r for r in batch if code != BUDGET_SPENT or r.deadline <= workflow.now()]
            self._requeue([r for r in batch if r not in spent])
            return [
                (r, LineOutcome(order_id=r.order_id, code=code, reason=reason, final=True)) for r in spent
            ]

    def _requeue(self, requests: list[PurchaseRequest]) -> None:
        """Back to the front, unless their order has asked again meanwhile (its newest request stands)."""
        asked_again = {r.order_id for r in self._waiting}
        self._waiting[:0] = [r for r in requests if r.order_id not in asked_again]

    async def _answer(self, request: PurchaseRequest, outcome: LineOutcome) -> None:
        self._alone.discard(request.request_id)
        self._answered += 1
        order = workflow.get_external_workflow_handle(request.workflow_id)
        try:
            await order.signal(ANSWER_SIGNAL, PurchaseAnswer(request_id=request.request_id, outcome=outcome))
        except FailureError as gone:  # the order's run has ended (e.g. terminated): nobody to tell
            workflow.logger.warning("order run %s not told its purchase: %s", request.workflow_id, gone)
