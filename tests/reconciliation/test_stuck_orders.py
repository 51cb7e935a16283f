"""Orders left in a non-terminal state (or stopped for an operator) with no workflow to move them are
reported as stuck."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from activities import reconciliation
from tests.reconciliation.conftest import Recon
from ttelgo.models import Order, OrderStatus


async def test_orders_whose_workflow_is_missing_or_closed_are_reported_stuck(recon: Recon) -> None:
    missing = await recon.vendor_order_waiting_for_supplier()  # no workflow was ever started
    # Finished orders whose rows were left behind (the workflow closed, the row did not follow), one of
    # them stopped for an operator who can no longer answer it (`resolve` needs the workflow).
    b2b = await recon.world.wallet_world()
    vendor = await b2b.new_vendor(balance=100_000)
    ids = []
    for _ in range(2):
        completed = await b2b.order(vendor)
        assert completed.status_code == 201, completed.text
        ids.append(completed.json()["id"])
    closed, attention = ids
    async with recon.world.sessions() as session, session.begin():
        await session.execute(update(Order).where(Order.id == closed).values(status=OrderStatus.PROVISIONING))
        await session.execute(
            update(Order)
            .where(Order.id == attention)
            .values(status=OrderStatus.NEEDS_ATTENTION, failure_code="IccidConflict")
        )
    # Card orders waiting for their payment: their workflows run, so they are not stuck, not even one
    # waiting for an operator.
    customer = await recon.world.customer()
    waiting = await recon.world.order(customer)
    assert waiting.status_code == 201, waiting.text
    operator = await recon.world.order(customer)
    assert operator.status_code == 201, operator.text
    operator_id = operator.json()["id"]
    async with recon.world.sessions() as session, session.begin():
        await session.execute(
            update(Order).where(Order.id == operator_id).values(status=OrderStatus.NEEDS_ATTENTION)
        )

    try:
        run = await recon.run()
    finally:  # put the rows back as their workflows left them, for the invariants
        async with recon.world.sessions() as session, session.begin():
            await session.execute(
                update(Order)
                .where(Order.id.in_([closed, attention]))
                .values(status=OrderStatus.COMPLETED, failure_code=None)
            )
            await session.execute(
                update(Order).where(Order.id == operator_id).values(status=OrderStatus.PAYMENT_PENDING)
            )
    stuck = {f["subject"]: f for f in run["findings"] if f["kind"] == "ORDER_STUCK"}
    assert set(stuck) == {str(missing), closed, attention}
    assert stuck[str(missing)]["detail"]["workflow"] == "MISSING"
    assert stuck[closed]["detail"]["workflow"] == "COMPLETED"
    assert stuck[closed]["detail"]["status"] == "PROVISIONING"
    assert stuck[attention]["detail"]["status"] == "NEEDS_ATTENTION"
    assert stuck[attention]["detail"]["failure_code"] == "IccidConflict"
    assert run["summary"]["ORDER_STUCK"] == 3
    assert not any("stuck orders" in note for note in run["notes"])


async def test_a_stuck_order_scan_cut_short_says_so(recon: Recon, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reconciliation, "STUCK_SCAN_LIMIT", 1)
    oldest = await recon.vendor_order_waiting_for_supplier()
    await recon.vendor_order_waiting_for_supplier()

    run = await recon.run()
    assert [f["subject"] for f in run["findings"] if f["kind"] == "ORDER_STUCK"] == [str(oldest)]
    assert any("only the oldest 1 unfinished orders were checked" in note for note in run["notes"]), run
