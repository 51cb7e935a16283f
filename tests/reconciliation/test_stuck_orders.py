"""Orders left in a non-terminal state with no workflow to move them are reported as stuck."""

from __future__ import annotations

from sqlalchemy import update

from tests.reconciliation.conftest import Recon
from ttelgo.models import Order, OrderStatus


async def test_orders_whose_workflow_is_missing_or_closed_are_reported_stuck(recon: Recon) -> None:
    missing = await recon.vendor_order_waiting_for_supplier()  # no workflow was ever started
    # A finished order whose row was left behind (the workflow closed, the row did not follow).
    b2b = await recon.world.wallet_world()
    vendor = await b2b.new_vendor(balance=100_000)
    completed = await b2b.order(vendor)
    assert completed.status_code == 201, completed.text
    closed = completed.json()["id"]
    async with recon.world.sessions() as session, session.begin():
        await session.execute(update(Order).where(Order.id == closed).values(status=OrderStatus.PROVISIONING))
    # A card order waiting for its payment: its workflow is running, so it is not stuck.
    customer = await recon.world.customer()
    waiting = await recon.world.order(customer)
    assert waiting.status_code == 201, waiting.text

    run = await recon.run()
    stuck = {f["subject"]: f for f in run["findings"] if f["kind"] == "ORDER_STUCK"}
    assert set(stuck) == {str(missing), closed}
    assert stuck[str(missing)]["detail"]["workflow"] == "MISSING"
    assert stuck[closed]["detail"]["workflow"] == "COMPLETED"
    assert stuck[closed]["detail"]["status"] == "PROVISIONING"
    assert run["summary"]["ORDER_STUCK"] == 2
    # Put the row back as its workflow left it, for the invariants.
    async with recon.world.sessions() as session, session.begin():
        await session.execute(update(Order).where(Order.id == closed).values(status=OrderStatus.COMPLETED))
