"""Supplier faults that last: outages outlive the old attempt count, Retry-After never shortens the
backoff, a purchase that commits after our timeout is adopted instead of bought twice, and supplier data
we cannot deliver on stops the order for an operator instead of completing it without its eSIMs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from activities.contracts import EsimInstall, OrderInput, StoreEsims
from activities.orders import OrderActivities
from tests.b2b.conftest import B2B, BUNDLE, VendorHandle
from tests.support.stack import running_worker, stack_settings
from ttelgo.models import Esim, Order, OrderStatus, Transfer, TransferKind
from workflows.order import OrderProgress, OrderWorkflow, order_workflow_id

PRICE = 500


async def _order_row(b2b: B2B, order_id: str) -> Order:
    async with b2b.sessions() as session:
        return await session.get_one(Order, uuid.UUID(order_id))


async def _until_status(b2b: B2B, vendor: VendorHandle, order_id: str, *statuses: str) -> dict:
    async with asyncio.timeout(60):
        while True:
            body = (await b2b.api.get(f"/api/v1/vendor/orders/{order_id}", headers=vendor.headers)).json()
            if body["status"] in statuses:
                return body
            await asyncio.sleep(0.2)


# -- long outages, in skipped time ----------------------------------------------------------------------
@pytest.fixture
async def skipping(b2b: B2B, time_skipping_env: WorkflowEnvironment) -> AsyncIterator[tuple[B2B, str]]:
    """A worker on the time-skipping server, sharing the test's database and simulator."""
    queue = f"ts-{uuid.uuid4().hex[:10]}"
    settings = stack_settings(b2b.settings.database_url or "", time_skipping_env.client, b2b.sim, queue)
    async with running_worker(settings, time_skipping_env.client):
        yield b2b, queue


def _wallet_order(
    vendor: VendorHandle, *, quantity: int, supplier_task_queue: str, budget_s: int
) -> OrderInput:
    """What the vendor order API would start, priced at PRICE."""
    order_id = uuid.uuid4()
    return OrderInput(
        order_id=order_id,
        workflow_id=order_workflow_id(order_id),
        channel="B2B",
        vendor_id=uuid.UUID(vendor.id),
        bundle_code=BUNDLE,
        quantity=quantity,
        unit_price_minor=PRICE,
        currency="USD",
        wholesale_unit_minor=PRICE,
        supplier_task_queue=supplier_task_queue,
        supplier_retry_budget_s=budget_s,
    )


async def _run_order(
    env: WorkflowEnvironment, vendor: VendorHandle, queue: str, budget_s: int
) -> tuple[OrderProgress, float]:
    """Runs one wallet order to its end in skipped time; answers its result and how long it took."""
    order = _wallet_order(vendor, quantity=1, supplier_task_queue=f"{queue}-esimgo", budget_s=budget_s)
    handle = await env.client.start_workflow(
        OrderWorkflow.run, order, id=order.workflow_id, task_queue=queue, result_type=OrderProgress
    )
    progress = await handle.result()
    events = [e async for e in handle.fetch_history_events()]
    took = events[-1].event_time.ToDatetime() - events[0].event_time.ToDatetime()
    return progress, took.total_seconds()


@pytest.mark.parametrize("status", [503, 429])
async def test_an_outage_longer_than_twenty_attempts_delays_the_order_but_does_not_fail_it(
    skipping: tuple[B2B, str], time_skipping_env: WorkflowEnvironment, status: int
) -> None:
    b2b, queue = skipping
    vendor = await b2b.new_vendor(balance=10_000)
    # 25 refusals, each with `Retry-After: 1`: the old policy gave up after 20 attempts in under a minute.
    b2b.sim.faults(**{"POST /orders": {"fail_next": 25, "error_status": status, "retry_after_s": 1}})

    progress, took = await _run_order(time_skipping_env, vendor, queue, budget_s=7200)

    assert progress.status is OrderStatus.COMPLETED, progress
    stats = b2b.sim.stats()
    assert stats["requests"]["POST /orders"] == 26
    assert stats["orders"]["transactions"] == 1
    # Exponential backoff (1 s doubling to 60 s) under the 1 s Retry-After: about 20 minutes, not 25 s.
    assert took > 15 * 60, f"retries took {took:.0f} s: Retry-After replaced the backoff"
    # A refused call is not in doubt: the outage cost no orphan scans.
    assert stats["requests"].get("GET /orders", 0) == 0
    assert (await b2b.wallet(vendor))["balance_minor"] == 10_000 - PRICE


async def test_an_outage_past_the_retry_budget_fails_the_order_and_releases_the_hold(
    skipping: tuple[B2B, str], time_skipping_env: WorkflowEnvironment
) -> None:
    b2b, queue = skipping
    vendor = await b2b.new_vendor(balance=10_000)
    b2b.sim.faults(**{"POST /orders": {"error_rate": 1.0, "error_status": 503}})

    progress, took = await _run_order(time_skipping_env, vendor, queue, budget_s=1800)

    assert progress.status is OrderStatus.FAILED
    assert progress.failure_code == "SUPPLIER_UNAVAILABLE"
    assert "eSIM Go 503" in (progress.failure_reason or "")
    assert took > 25 * 60  # the budget, less the last backoff that would have overrun it
    assert b2b.sim.stats()["orders"]["transactions"] == 0
    wallet = await b2b.wallet(vendor)
    assert (wallet["balance_minor"], wallet["available_minor"]) == (10_000, 10_000)


# -- a purchase that commits after our timeout ----------------------------------------------------------
LATE_COMMITS = {"settings": {"esimgo_timeout_seconds": 1, "esimgo_commit_delay_seconds": 5}}


@pytest.mark.parametrize("b2b", [LATE_COMMITS], indirect=True)
async def test_a_purchase_committed_after_our_timeout_is_adopted_not_bought_again(b2b: B2B) -> None:
    vendor = await b2b.new_vendor(balance=10_000)
    # The supplier hangs past our 1 s timeout, then places the order all the same, within 5 s.
    b2b.sim.faults(**{"POST /orders": {"timeout_rate": 1.0, "timeout_s": 3, "timeout_commits": True}})
    response = await b2b.order(vendor, wait=0)
    assert response.status_code == 202, response.text
    order_id = response.json()["id"]
    async with asyncio.timeout(30):
        while b2b.sim.stats()["requests"].get("POST /orders", 0) < 1:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    b2b.sim.faults()  # the fault is lifted long before the lost call commits

    body = await _until_status(b2b, vendor, order_id, "COMPLETED", "FAILED")

    assert body["status"] == "COMPLETED", body
    stats = b2b.sim.stats()
    assert stats["orders"]["transactions"] == 1, "the supplier was paid twice"
    assert stats["requests"]["POST /orders"] == 1
    assert len(body["esims"]) == 1
    row = await _order_row(b2b, order_id)
    assert row.supplier_order_reference and row.supplier_call_sent_at is None


@pytest.mark.parametrize("b2b", [LATE_COMMITS], indirect=True)
async def test_with_a_third_of_calls_committing_late_each_order_buys_exactly_once(b2b: B2B) -> None:
    vendor = await b2b.new_vendor(balance=100_000)
    late = {"timeout_rate": 0.3, "timeout_s": 3, "timeout_commits": True}
    b2b.sim.faults(**{"POST /orders": late})

    responses = await asyncio.gather(*(b2b.order(vendor, wait=0) for _ in range(12)))
    ids = [r.json()["id"] for r in responses]
    finals = [await _until_status(b2b, vendor, i, "COMPLETED", "FAILED", "NEEDS_ATTENTION") for i in ids]

    assert [f["status"] for f in finals] == ["COMPLETED"] * 12
    stats = b2b.sim.stats()
    assert stats["faults"].get("POST /orders timeout", 0) >= 1, "no call timed out: the test proves nothing"
    # Waiting orders may share a supplier order (a line each): count bundles, not supplier orders.
    assert stats["orders"]["bundles_ordered"] == 12, "bought more bundles than were ordered"
    iccids = {e["iccid"] for f in finals for e in f["esims"]}
    assert len(iccids) == 12


# -- supplier data we cannot deliver on -----------------------------------------------------------------
async def _resolve(b2b: B2B, order_id: str, action: str) -> dict:
    response = await b2b.api.post(
        f"/api/v1/admin/orders/{order_id}/resolve",
        json={"action": action, "reason": "checked with eSIM Go support"},
        headers=b2b.admin,
    )
    assert response.status_code == 202, response.text
    return response.json()


def _supplier_balance(b2b: B2B) -> float:
    return b2b.sim.admin.get("/organisation/balance").json()["balance"]


async def test_an_iccid_another_order_holds_stops_the_order_with_its_money_held(b2b: B2B) -> None:
    vendor = await b2b.new_vendor(balance=10_000)
    first = await b2b.order(vendor)
    assert first.status_code == 201 and first.json()["status"] == "COMPLETED", first.text
    price = first.json()["total_minor"]
    b2b.sim.admin.post("/reset").raise_for_status()  # it forgets, and issues the same ICCIDs again

    second = await b2b.order(vendor, wait=0)
    order_id = second.json()["id"]
    body = await _until_status(b2b, vendor, order_id, "NEEDS_ATTENTION", "COMPLETED", "FAILED")

    assert body["status"] == "NEEDS_ATTENTION", body
    assert body["failure_code"] == "IccidConflict"
    assert first.json()["esims"][0]["iccid"] in body["failure_reason"]
    assert body["esims"] == []
    wallet = await b2b.wallet(vendor)
    assert wallet["balance_minor"] == 10_000 - price  # not charged for what it did not get ...
    assert wallet["held_minor"] == price  # ... but not released either, until an operator decides
    async with b2b.sessions() as session:
        owners = list(await session.scalars(select(Esim.order_id)))
    assert owners == [uuid.UUID(first.json()["id"])]  # the first order keeps its eSIM

    await _resolve(b2b, order_id, "give_up")

    failed = await _until_status(b2b, vendor, order_id, "FAILED")
    assert failed["failure_code"] == "OPERATOR_GAVE_UP"
    wallet = await b2b.wallet(vendor)
    assert (wallet["balance_minor"], wallet["held_minor"]) == (10_000 - price, 0)
    again = await b2b.api.post(
        f"/api/v1/admin/orders/{order_id}/resolve",
        json={"action": "retry", "reason": "too late"},
        headers=b2b.admin,
    )
    assert again.status_code == 409 and again.json()["code"] == "ORDER_INVALID_STATE"
    audit = await b2b.api.get("/api/v1/admin/audit-logs", params={"target_id": order_id}, headers=b2b.admin)
    assert [row["action"] for row in audit.json()["items"]] == ["order.resolve.give_up"]
    # Its clashing ICCID is left to the operator: revoking by ICCID could hit the other order's bundle.
    assert not any(route.startswith("DELETE") for route in b2b.sim.stats()["requests"])


@pytest.mark.parametrize("action", ["retry", "give_up"])
async def test_a_reference_the_supplier_briefly_does_not_know_waits_for_an_operator(
    b2b: B2B, action: str
) -> None:
    vendor = await b2b.new_vendor(balance=100_000)
    supplier_balance = _supplier_balance(b2b)
    # A large order completes later at the supplier, so it is read back: that read answers 404 once.
    not_found = {"fail_next": 1, "error_status": 404, "error_message": "Order not found"}
    b2b.sim.faults(**{"GET /orders/{orderReference}": not_found})
    response = await b2b.order(vendor, quantity=6, wait=0)
    order_id = response.json()["id"]

    stopped = await _until_status(b2b, vendor, order_id, "NEEDS_ATTENTION", "COMPLETED", "FAILED")
    assert stopped["status"] == "NEEDS_ATTENTION", stopped
    assert stopped["failure_code"] == "SupplierReferenceLost"

    await _resolve(b2b, order_id, action)

    done = await _until_status(b2b, vendor, order_id, "COMPLETED", "FAILED")
    assert b2b.sim.stats()["orders"]["transactions"] == 1
    if action == "give_up":  # the money goes back, and the six bundles bought go back to eSIM Go
        assert done["status"] == "FAILED" and done["esims"] == []
        assert (await b2b.wallet(vendor))["held_minor"] == 0
        async with asyncio.timeout(30):
            while _supplier_balance(b2b) != supplier_balance:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
        return
    assert done["status"] == "COMPLETED" and len(done["esims"]) == 6
    async with b2b.sessions() as session:
        posts = await session.scalars(
            select(Transfer).where(
                Transfer.order_id == uuid.UUID(order_id), Transfer.kind == TransferKind.POST_PENDING
            )
        )
        assert len(list(posts)) == 1


async def test_fewer_esims_than_bought_stores_none_of_them(b2b: B2B) -> None:
    vendor = await b2b.new_vendor()
    order = _wallet_order(vendor, quantity=2, supplier_task_queue="unused", budget_s=1800)
    records = OrderActivities(b2b.sessions)
    await records.create_record(order)
    one = EsimInstall(iccid="8944000000000000017", matching_id="M-1", smdp_address="rsp.example.test")

    with pytest.raises(ApplicationError) as refused:
        await records.store_esims(
            StoreEsims(order_id=order.order_id, bundle_code=BUNDLE, quantity=2, esims=[one])
        )

    assert refused.value.type == "IncompleteDelivery" and refused.value.non_retryable
    async with b2b.sessions() as session:
        assert list(await session.scalars(select(Esim.iccid))) == []  # nothing half-delivered is shown
