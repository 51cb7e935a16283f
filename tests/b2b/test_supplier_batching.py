"""Orders waiting for eSIM Go are bought together: one multi-line supplier order, a line per order.

The batcher sends a lone order at once; while its calls are out (`max_in_flight`), requests wait and go
together. The tests start the batcher themselves with one call in flight and hold that call at the
simulator, so which orders share a supplier order is known, not left to timing.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle

from activities.contracts import BatcherState, BatcherStatus, PurchaseRequest, batcher_workflow_id
from tests.b2b.conftest import B2B, VendorHandle
from tests.support.stack import wait_for
from ttelgo.models import Esim, Order
from workflows.supplier_orders import SupplierOrdersWorkflow

HELD_MS = 1500  # the first call is held this long at the simulator: the others arrive meanwhile


async def _start_batcher(b2b: B2B, **tunables: int) -> WorkflowHandle[SupplierOrdersWorkflow, None]:
    queue = b2b.settings.esimgo_task_queue
    return await b2b.temporal.start_workflow(
        SupplierOrdersWorkflow.run,
        BatcherState(supplier_task_queue=queue, **tunables),
        id=batcher_workflow_id(queue),
        task_queue=b2b.settings.temporal_task_queue,
    )


async def _status(batcher: WorkflowHandle[SupplierOrdersWorkflow, None]) -> BatcherStatus:
    return await batcher.query(SupplierOrdersWorkflow.status)


async def _one_alone_then_together(
    b2b: B2B, vendor: VendorHandle, together: int
) -> tuple[httpx.Response, list[httpx.Response]]:
    """One order whose call is held at the simulator, then `together` orders that wait behind it."""
    batcher = await _start_batcher(b2b, max_in_flight=1)
    b2b.sim.faults(**{"POST /orders": {"latency_ms": HELD_MS}})
    first = asyncio.create_task(b2b.order(vendor, wait=30))
    async with asyncio.timeout(20):
        await wait_for(lambda: _in_flight(batcher))
    rest: list[Awaitable[httpx.Response]] = [
        asyncio.create_task(b2b.order(vendor, wait=30)) for _ in range(together)
    ]
    async with asyncio.timeout(20):
        await wait_for(lambda: _waiting(batcher, together))
    b2b.sim.faults()  # the next call goes through at once
    return await first, list(await asyncio.gather(*rest))


async def _in_flight(batcher: WorkflowHandle[SupplierOrdersWorkflow, None]) -> bool:
    return (await _status(batcher)).in_flight == 1


async def _waiting(batcher: WorkflowHandle[SupplierOrdersWorkflow, None], n: int) -> bool:
    return (await _status(batcher)).waiting == n


async def _rows(b2b: B2B, responses: list[httpx.Response]) -> list[Order]:
    ids = [uuid.UUID(r.json()["id"]) for r in responses]
    async with b2b.sessions() as session:
        rows = {o.id: o for o in await session.scalars(select(Order).where(Order.id.in_(ids)))}
    return [rows[i] for i in ids]


async def test_waiting_orders_are_bought_in_one_supplier_order_a_line_each(b2b: B2B) -> None:
    vendor = await b2b.new_vendor(balance=100_000)
    first, together = await _one_alone_then_together(b2b, vendor, 3)

    assert [r.status_code for r in [first, *together]] == [201] * 4
    assert {r.json()["status"] for r in [first, *together]} == {"COMPLETED"}
    orders = b2b.sim.stats()["orders"]
    assert (orders["transactions"], orders["lines"], orders["bundles_ordered"]) == (2, 4, 4)
    alone, *batched = await _rows(b2b, [first, *together])
    assert len({o.supplier_order_reference for o in batched}) == 1
    assert alone.supplier_order_reference not in {o.supplier_order_reference for o in batched}
    assert sorted(o.supplier_order_line for o in batched) == [0, 1, 2]
    async with b2b.sessions() as session:
        held = list(
            await session.execute(
                select(Esim.order_id, Esim.iccid).where(Esim.order_id.in_([o.id for o in batched]))
            )
        )
    # Each order holds its own line's eSIM, and no two orders the same one.
    assert sorted(order_id for order_id, _ in held) == sorted(o.id for o in batched)
    assert len({iccid for _, iccid in held}) == 3
    for response in together:
        assert [e["iccid"] for e in response.json()["esims"]] == [
            iccid for order_id, iccid in held if str(order_id) == response.json()["id"]
        ]
    unit = await b2b.wholesale()
    assert await b2b.wallet(vendor) == {
        "currency": "USD",
        "balance_minor": 100_000 - 4 * unit,
        "available_minor": 100_000 - 4 * unit,
        "held_minor": 0,
        "credit_limit_minor": 0,
    }
    await _record_history(b2b, "supplier_orders_batch", batcher_workflow_id(b2b.settings.esimgo_task_queue))
    await _record_history(b2b, "order_b2b_batched", f"order-{together[0].json()['id']}")


async def test_a_call_the_supplier_refuses_is_split_and_each_order_answers_for_itself(b2b: B2B) -> None:
    """Our supplier balance pays for two bundles: the first order's and one more. The three that wait are
    refused together (their total is short), then sent alone: one is bought, two fail and get their
    money back; nobody else's order is failed by them."""
    unit = await b2b.wholesale()
    b2b.sim.admin.put(
        "/organisation/balance", json={"balance": float(Decimal(unit * 2) / 100)}
    ).raise_for_status()
    vendor = await b2b.new_vendor(balance=100_000)
    first, together = await _one_alone_then_together(b2b, vendor, 3)

    assert first.json()["status"] == "COMPLETED"
    statuses = sorted(r.json()["status"] for r in together)
    assert statuses == ["COMPLETED", "FAILED", "FAILED"], [r.json() for r in together]
    codes = {r.json()["failure_code"] for r in together if r.json()["status"] == "FAILED"}
    assert len(codes) == 1 and codes.pop().endswith("BalanceExhausted")
    stats = b2b.sim.stats()
    # The call of three was refused (nothing bought), then each order went alone.
    assert stats["orders"]["transactions"] == 2 and stats["orders"]["lines"] == 2
    assert stats["requests"]["POST /orders"] == 5
    rows = await _rows(b2b, [first, *together])
    bought = [o for o in rows if o.supplier_order_reference]
    assert len(bought) == 2 and len({o.supplier_order_reference for o in bought}) == 2
    # The failed ones closed their rows to purchases before their money went back: no late call buys.
    assert [o.supplier_closed_at is not None for o in rows] == [o.status.value == "FAILED" for o in rows]
    wallet = await b2b.wallet(vendor)
    assert wallet["balance_minor"] == wallet["available_minor"] == 100_000 - 2 * unit
    assert wallet["held_minor"] == 0


@pytest.mark.parametrize("b2b", [{"settings": {"esimgo_batch_orders": False}}], indirect=True)
async def test_with_batching_off_each_order_is_its_own_supplier_order(b2b: B2B) -> None:
    vendor = await b2b.new_vendor(balance=100_000)
    responses = await asyncio.gather(*(b2b.order(vendor, wait=30) for _ in range(4)))
    assert {r.json()["status"] for r in responses} == {"COMPLETED"}
    assert b2b.sim.stats()["orders"]["transactions"] == 4
    rows = await _rows(b2b, list(responses))
    assert len({o.supplier_order_reference for o in rows}) == 4
    assert {o.supplier_order_line for o in rows} == {0}
    batcher = b2b.temporal.get_workflow_handle(batcher_workflow_id(b2b.settings.esimgo_task_queue))
    with pytest.raises(Exception, match="not found"):
        await batcher.describe()


async def test_the_batcher_starts_afresh_and_ends_when_idle_losing_no_request(b2b: B2B) -> None:
    """Continue-as-new every two answers carries what waits; with nothing to do it ends, and the next
    order starts it again."""
    vendor = await b2b.new_vendor(balance=100_000)
    batcher = await _start_batcher(b2b, max_in_flight=1, answers_per_run=2, idle_s=2)
    for _ in range(7):  # one after another: every run answers exactly two, the fourth one
        assert (await b2b.order(vendor, wait=30)).json()["status"] == "COMPLETED"
    orders = b2b.sim.stats()["orders"]
    assert orders["lines"] == orders["bundles_ordered"] == 7
    async with asyncio.timeout(30):
        await wait_for(lambda: _runs_ended(b2b, batcher.id))

    again = await b2b.order(vendor, wait=30)
    assert again.json()["status"] == "COMPLETED"
    assert (await b2b.temporal.get_workflow_handle(batcher.id).describe()).status is (
        WorkflowExecutionStatus.RUNNING
    )


async def _runs_ended(b2b: B2B, workflow_id: str) -> bool:
    """Seven answers, two a run: three runs continued as new, and the fourth ended idle."""
    runs = [r.status async for r in b2b.temporal.list_workflows(f"WorkflowId = '{workflow_id}'")]
    return (
        runs.count(WorkflowExecutionStatus.CONTINUED_AS_NEW) == 3
        and runs.count(WorkflowExecutionStatus.COMPLETED) == 1
    )


async def _record_history(b2b: B2B, name: str, workflow_id: str) -> None:
    """With TTELGO_RECORD_HISTORIES set, the workflow's history becomes a replay fixture."""
    if os.environ.get("TTELGO_RECORD_HISTORIES"):
        history = await b2b.temporal.get_workflow_handle(workflow_id).fetch_history()
        (Path(__file__).parents[1] / "histories" / f"{name}.json").write_text(history.to_json())


def _request(b2b: B2B, order_id: uuid.UUID, *, deadline: datetime | None = None) -> PurchaseRequest:
    return PurchaseRequest(
        request_id=uuid.uuid4(),
        order_id=order_id,
        quantity=1,
        workflow_id=f"order-{order_id}",  # no such run: its answer is logged, not delivered
        deadline=deadline or datetime.now(UTC) + timedelta(minutes=30),
        supplier_task_queue=b2b.settings.esimgo_task_queue,
        batcher_task_queue=b2b.settings.temporal_task_queue,
    )


async def test_the_batcher_keeps_one_request_per_order_and_a_bounded_queue(b2b: B2B) -> None:
    """An order that asks again replaces its waiting request; past `max_waiting`, a request is answered
    at once (the order buys alone) instead of growing the queue and the history it carries."""
    batcher = await _start_batcher(b2b, max_in_flight=0, max_waiting=3)  # sends nothing: the queue stays
    first, second = uuid.uuid4(), uuid.uuid4()
    for request in (_request(b2b, first), _request(b2b, first), _request(b2b, second)):
        await batcher.signal(SupplierOrdersWorkflow.purchase, request)
    assert (await _status(batcher)).waiting == 2

    for _ in range(2):
        await batcher.signal(SupplierOrdersWorkflow.purchase, _request(b2b, uuid.uuid4()))
    async with asyncio.timeout(10):
        await wait_for(lambda: _answered(batcher, 1))
    assert (await _status(batcher)).waiting == 3
    await batcher.terminate("test over")


async def test_a_request_whose_budget_ran_out_while_waiting_is_answered_not_sent(b2b: B2B) -> None:
    batcher = await _start_batcher(b2b)
    late = _request(b2b, uuid.uuid4(), deadline=datetime.now(UTC) - timedelta(seconds=1))
    await batcher.signal(SupplierOrdersWorkflow.purchase, late)
    async with asyncio.timeout(10):
        await wait_for(lambda: _answered(batcher, 1))
    assert (await _status(batcher)).waiting == 0
    assert b2b.sim.stats()["requests"].get("POST /orders", 0) == 0
    await batcher.terminate("test over")


async def _answered(batcher: WorkflowHandle[SupplierOrdersWorkflow, None], n: int) -> bool:
    return (await _status(batcher)).answered == n
