"""Orders bought together: one multi-line eSIM Go order, a line per order, exactly once per call. The
supplier activities are driven directly (in Temporal's activity environment) against the simulator and a
migrated database holding the order rows."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.contracts import (
    BATCH_REFUSED,
    IN_DOUBT_ELSEWHERE,
    ORDER_NOT_BUYING,
    LineOutcome,
    OrderInput,
    SupplierBatch,
)
from activities.esimgo import SupplierActivities
from activities.orders import OrderActivities
from tests.support.esimgo import SIM_API_KEY, SimHandle
from ttelgo.db import create_engine, session_factory
from ttelgo.esimgo.types import PurchaseLine
from ttelgo.models import Channel, FindingKind, Order, OrderKind, OrderStatus, ReconciliationFinding, User

FR, DE, EU = "esim_1GB_7D_FR_V2", "esim_1GB_7D_DE_V2", "esim_5GB_30D_EU_V3"
SETTLED = timedelta(0)  # a call in doubt may be looked for at once
PATIENT = timedelta(minutes=2)  # ... or only once the supplier can have committed it
# The supplier hangs past our 1 s timeout, then places the order all the same.
LATE_COMMIT = {"POST /orders": {"timeout_rate": 1.0, "timeout_s": 2, "timeout_commits": True}}


@dataclass
class World:
    sessions: async_sessionmaker[AsyncSession]
    sim: SimHandle
    user_id: uuid.UUID

    def posts(self) -> int:
        return int(self.sim.stats()["requests"].get("POST /orders", 0))

    def transactions(self) -> int:
        return int(self.sim.stats()["orders"]["transactions"])

    async def order(self, bundle: str, quantity: int = 1, *, topup_of: str | None = None) -> OrderInput:
        """An order row waiting for the supplier, as the order workflow leaves it, and its input."""
        order = OrderInput(
            order_id=uuid.uuid4(),
            workflow_id=f"order-{uuid.uuid4()}",
            channel=Channel.B2C,
            user_id=self.user_id,
            bundle_code=bundle,
            quantity=quantity,
            unit_price_minor=500,
            currency="USD",
            wholesale_unit_minor=300,
            supplier_task_queue="unused",
            kind=OrderKind.TOPUP if topup_of else OrderKind.ORDER,
            target_iccid=topup_of,
        )
        async with self.sessions() as session, session.begin():
            session.add(
                Order(
                    id=order.order_id,
                    channel=order.channel,
                    user_id=self.user_id,
                    status=OrderStatus.PROVISIONING,
                    kind=order.kind,
                    target_iccid=topup_of,
                    bundle_code=bundle,
                    quantity=quantity,
                    unit_price_minor=500,
                    total_minor=500 * quantity,
                    currency="USD",
                    workflow_id=order.workflow_id,
                )
            )
        return order

    async def rows(self, orders: list[OrderInput]) -> list[Order]:
        async with self.sessions() as session:
            found = {o.id: o for o in await session.scalars(select(Order))}
        return [found[o.order_id] for o in orders]

    def supplier(self, commit_delay: timedelta = SETTLED, timeout_s: float = 15) -> SupplierActivities:
        client = self.sim.client(timeout=httpx.Timeout(timeout_s, connect=5.0))
        return SupplierActivities(client, self.sessions, commit_delay=commit_delay)

    async def batch(
        self, batch: SupplierBatch, supplier: SupplierActivities | None = None
    ) -> list[LineOutcome]:
        supplier = supplier or self.supplier()
        try:
            return await ActivityEnvironment().run(supplier.place_batch, batch)
        finally:
            await supplier.esimgo.aclose()

    async def in_doubt_elsewhere(self, order: OrderInput) -> None:
        """The order's row waits on the answer to another call (sent just now)."""
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(Order)
                .where(Order.id == order.order_id)
                .values(supplier_batch_id=uuid.uuid4(), supplier_call_sent_at=datetime.now(UTC))
            )

    async def new_esim(self) -> str:
        """An eSIM of ours at the supplier (bought before the test's own calls)."""
        client = self.sim.client()
        try:
            return (await client.create_order(FR, 1)).esims[0].iccid
        finally:
            await client.aclose()

    def bundle_states(self, iccid: str) -> dict[str, list[str]]:
        response = httpx.get(f"{self.sim.api_url}/esims/{iccid}/bundles", headers={"X-API-Key": SIM_API_KEY})
        response.raise_for_status()
        return {b["name"]: [a["bundleState"] for a in b["assignments"]] for b in response.json()["bundles"]}

    async def until_transactions(self, n: int) -> None:
        """The simulator has placed `n` orders (a hung call commits after its hang)."""
        async with asyncio.timeout(30):
            while self.transactions() < n:  # noqa: ASYNC110
                await asyncio.sleep(0.1)


@pytest.fixture
async def world(database_url: str, esimgo_sim: SimHandle) -> AsyncIterator[World]:
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    user_id = uuid.uuid4()
    async with sessions() as session, session.begin():
        session.add(User(id=user_id, email=f"{user_id}@example.test", password_hash="x"))
    try:
        yield World(sessions, esimgo_sim, user_id)
    finally:
        await engine.dispose()


def _batch(*orders: OrderInput, batch_id: uuid.UUID | None = None) -> SupplierBatch:
    return SupplierBatch(batch_id=batch_id or uuid.uuid4(), order_ids=[o.order_id for o in orders])


async def test_a_batch_is_one_supplier_order_and_each_order_gets_its_own_line(world: World) -> None:
    target = await world.new_esim()
    orders = [await world.order(FR, 2), await world.order(EU, 1, topup_of=target), await world.order(DE, 2)]
    posts = world.posts()

    outcomes = await world.batch(_batch(*orders))

    assert world.posts() == posts + 1, "one call for the whole batch"
    assert [o.order_id for o in outcomes] == [o.order_id for o in orders]
    refs = [o.ref for o in outcomes]
    assert all(r is not None for r in refs), outcomes
    assert len({r.reference for r in refs if r}) == 1
    assert [r.line for r in refs if r] == [0, 1, 2]
    iccids = [[e.iccid for e in r.esims] for r in refs if r]
    assert [len(i) for i in iccids] == [2, 1, 2]
    assert iccids[1] == [target], "the top-up's line is its own eSIM"
    assert len({i for line in iccids for i in line}) == 5, "no eSIM on two lines"
    rows = await world.rows(orders)
    assert [(r.supplier_order_reference, r.supplier_order_line) for r in rows] == [
        (refs[0].reference if refs[0] else None, line) for line in range(3)
    ]
    assert all(r.supplier_call_sent_at is None for r in rows)

    again = await world.batch(_batch(*orders))  # the activity retried after its success was lost

    assert world.posts() == posts + 1, "a retry buys nothing more"
    assert again == outcomes


async def test_a_batch_in_doubt_waits_then_adopts_its_late_order_for_every_line(world: World) -> None:
    orders = [await world.order(FR), await world.order(DE, 2), await world.order(FR)]
    batch = _batch(*orders)
    world.sim.faults(**LATE_COMMIT)
    with pytest.raises(ApplicationError) as lost:
        await world.batch(batch, world.supplier(timeout_s=1))
    assert lost.value.type == "SupplierRetryable" and not lost.value.non_retryable
    await world.until_transactions(1)
    world.sim.faults()

    with pytest.raises(ApplicationError) as waiting:
        await world.batch(batch, world.supplier(PATIENT))
    assert waiting.value.type == "SupplierCallInDoubt"
    assert waiting.value.next_retry_delay and waiting.value.next_retry_delay > timedelta(minutes=1)
    outcomes = await world.batch(batch)

    assert world.posts() == 1 and world.transactions() == 1, "adopted, not bought again"
    refs = [o.ref for o in outcomes]
    assert [r.line for r in refs if r] == [0, 1, 2]
    assert [len(r.esims) for r in refs if r] == [1, 2, 1]
    rows = await world.rows(orders)
    assert len({r.supplier_order_reference for r in rows}) == 1 and rows[0].supplier_order_reference
    assert all(r.supplier_call_sent_at is None for r in rows)


async def test_a_late_order_of_another_composition_is_not_adopted(world: World) -> None:
    orders = [await world.order(FR), await world.order(DE)]
    batch = _batch(*orders)
    # The call hangs and is never placed; meanwhile orders of the same bundles, but not this call, are.
    world.sim.faults(**{"POST /orders": {"timeout_rate": 1.0, "timeout_s": 2}})
    with pytest.raises(ApplicationError):
        await world.batch(batch, world.supplier(timeout_s=1))
    world.sim.faults()
    client = world.sim.client()
    try:
        swapped = await client.create_order_lines(
            [PurchaseLine(bundle_name=DE, quantity=1), PurchaseLine(bundle_name=FR, quantity=1)]
        )
        alone = await client.create_order(FR, 1)
    finally:
        await client.aclose()

    outcomes = await world.batch(batch)

    assert world.transactions() == 3, "bought again: nothing there was this call"
    reference = {o.ref.reference for o in outcomes if o.ref}
    assert len(reference) == 1 and reference.isdisjoint({swapped.reference, alone.reference})


async def test_one_bad_line_refuses_the_whole_batch_and_leaves_nothing_in_doubt(world: World) -> None:
    orders = [await world.order(FR), await world.order("esim_NOPE_V2"), await world.order(DE)]

    with pytest.raises(ApplicationError) as refused:
        await world.batch(_batch(*orders))

    assert refused.value.type == BATCH_REFUSED and refused.value.non_retryable
    assert world.transactions() == 0
    rows = await world.rows(orders)
    assert [(r.supplier_order_reference, r.supplier_call_sent_at) for r in rows] == [(None, None)] * 3


async def test_a_line_refused_alone_is_that_orders_answer_not_its_neighbours(world: World) -> None:
    """A batch whose only sent line is refused answers that line with the refusal; the order left out of the
    call (its row waits on another call) keeps its own answer and buys alone."""
    elsewhere, bad = await world.order(FR), await world.order("esim_NOPE_V2")
    await world.in_doubt_elsewhere(elsewhere)

    outcomes = await world.batch(_batch(elsewhere, bad))

    assert outcomes[0].code == IN_DOUBT_ELSEWHERE and not outcomes[0].final
    assert outcomes[1].code == "SupplierUnknownBundle" and outcomes[1].final and outcomes[1].ref is None
    assert world.sim.admin.get("/stats").json()["orders"]["transactions"] == 0


async def test_a_row_in_doubt_in_another_call_is_left_out_not_sent_again(world: World) -> None:
    elsewhere, fresh = await world.order(FR), await world.order(DE)
    await world.in_doubt_elsewhere(elsewhere)

    outcomes = await world.batch(_batch(elsewhere, fresh))

    assert outcomes[0].code == IN_DOUBT_ELSEWHERE and not outcomes[0].final and outcomes[0].ref is None
    assert outcomes[1].ref is not None and outcomes[1].ref.line == 0
    placed = world.sim.admin.get("/stats").json()["orders"]
    assert placed["transactions"] == 1 and placed["by_bundle"] == {DE: 1}
    [left, bought] = await world.rows([elsewhere, fresh])
    assert left.supplier_order_reference is None and left.supplier_call_sent_at is not None
    assert bought.supplier_order_reference == outcomes[1].ref.reference


async def test_releasing_one_failed_order_of_a_batch_revokes_only_its_line(world: World) -> None:
    # Its neighbours bought the same bundle: only the line tells whose eSIMs are whose.
    orders = [await world.order(FR), await world.order(FR, 2), await world.order(FR)]
    outcomes = await world.batch(_batch(*orders))
    lines = [[e.iccid for e in o.ref.esims] for o in outcomes if o.ref]
    supplier = world.supplier()
    try:
        revoked = await ActivityEnvironment().run(supplier.release_order, orders[1].order_id)
    finally:
        await supplier.esimgo.aclose()

    assert revoked == 2
    assert [world.bundle_states(i) for i in lines[1]] == [{FR: ["revoked"]}] * 2
    assert [world.bundle_states(i) for i in lines[0] + lines[2]] == [{FR: ["queued"]}] * 2


async def test_a_lone_order_in_doubt_in_a_batch_call_adopts_that_call_for_all_its_rows(
    world: World,
) -> None:
    orders = [await world.order(FR), await world.order(DE)]
    world.sim.faults(**LATE_COMMIT)
    with pytest.raises(ApplicationError):
        await world.batch(_batch(*orders), world.supplier(timeout_s=1))
    await world.until_transactions(1)
    world.sim.faults()
    supplier = world.supplier()
    try:
        ref = await ActivityEnvironment().run(supplier.place_order, orders[1])
    finally:
        await supplier.esimgo.aclose()

    assert world.posts() == 1
    assert ref.line == 1 and len(ref.esims) == 1
    rows = await world.rows(orders)
    assert [(r.supplier_order_reference, r.supplier_order_line) for r in rows] == [
        (ref.reference, 0),
        (ref.reference, 1),
    ]


async def _stop_buying(world: World, order: OrderInput) -> None:
    """What the order workflow does before it gives its money back."""
    await ActivityEnvironment().run(OrderActivities(world.sessions).stop_buying, order.order_id)


async def _give_up_while_the_call_is_out(
    world: World, gave_up: OrderInput, waiting: OrderInput
) -> asyncio.Task[list[LineOutcome]]:
    """A call for both, held at the simulator: `gave_up` closes its row after the call was marked and sent,
    before it is answered. Returns the call, still running."""
    world.sim.faults(**{"POST /orders": {"latency_ms": 1500}})
    call = asyncio.create_task(world.batch(_batch(gave_up, waiting)))
    async with asyncio.timeout(10):
        while (await world.rows([gave_up]))[0].supplier_call_sent_at is None:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    await _stop_buying(world, gave_up)
    return call


async def test_an_order_that_gave_up_is_never_bought_by_a_late_call(world: World) -> None:
    """A request still queued at the batcher when its order gave up (and got its money back) buys
    nothing; its neighbour in the call is bought."""
    gave_up, waiting = await world.order(FR), await world.order(DE)
    await _stop_buying(world, gave_up)

    outcomes = await world.batch(_batch(gave_up, waiting))

    assert outcomes[0].code == ORDER_NOT_BUYING and outcomes[0].final and outcomes[0].ref is None
    assert outcomes[1].ref is not None and outcomes[1].ref.line == 0
    assert world.sim.stats()["orders"]["by_bundle"] == {DE: 1}
    rows = await world.rows([gave_up, waiting])
    assert rows[0].supplier_order_reference is None and rows[0].supplier_call_sent_at is None


async def test_a_line_bought_for_an_order_that_gave_up_meanwhile_goes_back_at_once(world: World) -> None:
    """The call was sent before the order closed its row, and answered after: its line is returned to eSIM
    Go by the call itself (the order's own release may have run already), the neighbour keeps its eSIM."""
    gave_up, waiting = await world.order(FR), await world.order(DE)
    call = await _give_up_while_the_call_is_out(world, gave_up, waiting)

    outcomes = await call

    assert outcomes[0].code == ORDER_NOT_BUYING and outcomes[1].ref is not None
    returned, kept = await world.rows([gave_up, waiting])
    assert returned.supplier_order_reference == kept.supplier_order_reference  # recorded as it happened
    placed = world.sim.client()
    try:
        bought = await placed.get_order(returned.supplier_order_reference or "")
    finally:
        await placed.aclose()
    assert world.bundle_states(bought.lines[0].esims[0].iccid) == {FR: ["revoked"]}
    assert world.bundle_states(outcomes[1].ref.esims[0].iccid) == {DE: ["queued"]}


async def test_a_neighbour_adopting_the_call_returns_the_line_of_an_order_that_gave_up(world: World) -> None:
    """A call in doubt, one of whose orders gave up (money back) before the call was found: the order that
    adopts the call records every line as bought, and returns the given-up order's line at once."""
    gave_up, waiting = await world.order(FR), await world.order(DE)
    world.sim.faults(**LATE_COMMIT)
    with pytest.raises(ApplicationError):
        await world.batch(_batch(gave_up, waiting), world.supplier(timeout_s=1))
    await world.until_transactions(1)
    world.sim.faults()
    await _stop_buying(world, gave_up)
    supplier = world.supplier()
    try:
        ref = await ActivityEnvironment().run(supplier.place_order, waiting)
    finally:
        await supplier.esimgo.aclose()

    assert world.posts() == 1 and ref.line == 1
    returned, kept = await world.rows([gave_up, waiting])
    assert returned.supplier_order_reference == kept.supplier_order_reference == ref.reference
    placed = world.sim.client()
    try:
        bought = await placed.get_order(ref.reference)
    finally:
        await placed.aclose()
    assert world.bundle_states(bought.lines[0].esims[0].iccid) == {FR: ["revoked"]}
    assert world.bundle_states(ref.esims[0].iccid) == {DE: ["queued"]}


async def test_a_line_esim_go_will_not_take_back_is_a_finding_not_a_failed_call(world: World) -> None:
    gave_up, waiting = await world.order(FR), await world.order(DE)
    call = await _give_up_while_the_call_is_out(world, gave_up, waiting)
    world.sim.faults(**{"DELETE /esims/{iccid}/bundles/{name}": {"error_rate": 1.0, "error_status": 400}})

    outcomes = await call

    assert outcomes[0].code == ORDER_NOT_BUYING and outcomes[1].ref is not None  # the neighbour is served
    async with world.sessions() as session:
        finding = await session.scalar(
            select(ReconciliationFinding).where(ReconciliationFinding.order_id == gave_up.order_id)
        )
    assert finding is not None and finding.kind is FindingKind.BOUGHT_LINE_NOT_RETURNED
