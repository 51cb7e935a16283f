"""Supplier orders no order of ours claims: revoked to the supplier balance, or adopted by an order
still waiting for one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from activities import reconciliation
from tests.reconciliation.conftest import BUNDLE, Recon
from ttelgo.esimgo import SupplierOrder
from ttelgo.models import Order, OrderStatus


def _findings(run: dict, kind: str) -> list[dict]:
    return [f for f in run["findings"] if f["kind"] == kind]


async def test_an_unclaimed_supplier_order_is_revoked_to_the_balance_once(recon: Recon) -> None:
    before = recon.balance()
    # A late commit after our timeout: the supplier holds an order none of ours knows.
    placed = await _stray(recon)
    assert recon.balance() < before

    run = await recon.run()
    assert run["status"] == "COMPLETED", run
    [revoked] = _findings(run, "SUPPLIER_ORDER_REVOKED")
    assert revoked["subject"] == placed.reference and revoked["action"] == "REVOKED"
    assert revoked["detail"]["iccids"] == [e.iccid for e in placed.esims]
    assert run["summary"]["SUPPLIER_ORDER_REVOKED"] == 1
    assert recon.balance() == before, "refundToBalance gave the money back"
    [audit] = await recon.audit(target_type="supplier_order", target_id=placed.reference)
    assert audit.action == "reconciliation.supplier_order.revoke"
    assert (audit.actor_type, audit.actor_id) == ("system", "reconciliation")
    deletes = sum(n for route, n in recon.sim.stats()["requests"].items() if route.startswith("DELETE"))
    assert deletes == 1

    again = await recon.run()
    assert again["status"] == "COMPLETED", again
    assert again["findings"] == [] and again["summary"] == {}
    assert len(await recon.audit(target_type="supplier_order", target_id=placed.reference)) == 1
    assert sum(n for route, n in recon.sim.stats()["requests"].items() if route.startswith("DELETE")) == 1
    assert recon.balance() == before


async def test_a_used_unclaimed_bundle_is_reported_not_revoked(recon: Recon) -> None:
    placed = await _stray(recon)
    [esim] = placed.esims
    recon.sim.admin.post(f"/esims/{esim.iccid}/usage", json={"bytes": 1000}).raise_for_status()
    spent = recon.balance()

    run = await recon.run()
    [used] = _findings(run, "SUPPLIER_BUNDLE_USED")
    assert used["subject"] == placed.reference and used["action"] == "REPORTED"
    assert _findings(run, "SUPPLIER_ORDER_REVOKED") == []
    assert recon.balance() == spent
    assert await recon.audit(target_type="supplier_order", target_id=placed.reference) == []


async def _stray(recon: Recon, quantity: int = 1) -> SupplierOrder:
    """A supplier order none of ours claims: a late commit after our timeout."""
    client = recon.sim.client()
    try:
        return await client.create_order(BUNDLE, quantity)
    finally:
        await client.aclose()


async def test_a_supplier_order_an_order_of_ours_waits_for_is_adopted(recon: Recon) -> None:
    # Older, but their workflows have ended: a reference claimed for them would never be picked up.
    ended = await recon.vendor_order_waiting_for_supplier()
    stopped = await recon.vendor_order_waiting_for_supplier(status=OrderStatus.NEEDS_ATTENTION)
    placed = await _stray(recon)
    spent = recon.balance()
    # A real order, its workflow running, retrying through a supplier outage.
    recon.sim.faults(**{"POST /orders": {"error_rate": 1.0, "error_status": 503}})
    b2b = await recon.world.wallet_world()
    vendor = await b2b.new_vendor(balance=100_000)
    created = await b2b.order(vendor, wait=0)
    assert created.status_code == 202, created.text
    waiting = created.json()["id"]
    await recon.wait_for_row(waiting, OrderStatus.PROVISIONING)
    other_quantity = await recon.vendor_order_waiting_for_supplier(quantity=2, workflow=True)

    run = await recon.run()
    [adopted] = _findings(run, "SUPPLIER_ORDER_ADOPTED")
    assert adopted["subject"] == placed.reference and adopted["order_id"] == waiting
    assert _findings(run, "SUPPLIER_ORDER_REVOKED") == []
    assert (await recon.order_row(waiting)).supplier_order_reference == placed.reference
    for other in (ended, stopped, other_quantity):
        assert (await recon.order_row(other)).supplier_order_reference is None
    [audit] = await recon.audit(target_type="order", target_id=waiting)
    assert audit.action == "reconciliation.supplier_order.adopt"
    assert audit.after == {"supplier_order_reference": placed.reference}
    # The ones whose workflow has ended are reported for an operator instead.
    assert {f["subject"] for f in _findings(run, "ORDER_STUCK")} == {str(ended), str(stopped)}

    # The outage ends: the order's own next attempt delivers the adopted purchase; nothing else is bought.
    recon.sim.faults()
    done = await recon.world.wait_for(
        f"/api/v1/vendor/orders/{waiting}", vendor.headers, "COMPLETED", within_s=60
    )
    assert sorted(e["iccid"] for e in done["esims"]) == sorted(e.iccid for e in placed.esims)
    assert recon.balance() == spent, "one purchase, adopted; nothing revoked or bought again"

    again = await recon.run()
    assert _findings(again, "SUPPLIER_ORDER_ADOPTED") == _findings(again, "SUPPLIER_ORDER_REVOKED") == []
    assert len(await recon.audit(target_type="order", target_id=waiting)) == 1


async def test_an_order_whose_workflow_has_ended_adopts_nothing_and_the_purchase_is_revoked(
    recon: Recon,
) -> None:
    provisioning = await recon.vendor_order_waiting_for_supplier()  # no workflow behind it
    stopped = await recon.vendor_order_waiting_for_supplier(status=OrderStatus.NEEDS_ATTENTION)
    before = recon.balance()
    placed = await _stray(recon)

    run = await recon.run()
    assert _findings(run, "SUPPLIER_ORDER_ADOPTED") == []
    [revoked] = _findings(run, "SUPPLIER_ORDER_REVOKED")
    assert revoked["subject"] == placed.reference
    assert recon.balance() == before
    for order_id in (provisioning, stopped):
        assert (await recon.order_row(order_id)).supplier_order_reference is None

    # A revoked purchase is never adopted later, not even by an order whose workflow runs.
    late = await recon.vendor_order_waiting_for_supplier(workflow=True)
    again = await recon.run()
    assert _findings(again, "SUPPLIER_ORDER_ADOPTED") == []
    assert (await recon.order_row(late)).supplier_order_reference is None


async def test_an_order_whose_supplier_call_is_in_doubt_is_preferred(recon: Recon) -> None:
    refused = await recon.vendor_order_waiting_for_supplier(workflow=True)  # older; its call was refused
    in_doubt = await recon.vendor_order_waiting_for_supplier(
        workflow=True, call_sent_at=datetime.now(UTC) - timedelta(seconds=5)
    )
    placed = await _stray(recon)

    run = await recon.run()
    [adopted] = _findings(run, "SUPPLIER_ORDER_ADOPTED")
    assert (adopted["subject"], adopted["order_id"]) == (placed.reference, str(in_doubt))
    row = await recon.order_row(in_doubt)
    assert (row.supplier_order_reference, row.supplier_call_sent_at) == (placed.reference, None)
    assert (await recon.order_row(refused)).supplier_order_reference is None


async def test_a_candidate_locked_by_its_own_supplier_step_is_left_for_the_next_run(
    recon: Recon, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reconciliation, "ADOPT_LOCK_TIMEOUT_MS", 300)
    waiting = await recon.vendor_order_waiting_for_supplier(workflow=True)
    placed = await _stray(recon)
    spent = recon.balance()

    # The order's own supplier step holds its row (it locks it to read its reference) while the run looks.
    async with recon.world.sessions() as session, session.begin():
        await session.execute(select(Order).where(Order.id == waiting).with_for_update())
        run = await recon.run()
    assert _findings(run, "SUPPLIER_ORDER_REVOKED") == _findings(run, "SUPPLIER_ORDER_ADOPTED") == []
    assert any(placed.reference in note and "next run" in note for note in run["notes"]), run["notes"]
    assert recon.balance() == spent, "not revoked while the order that may need it was busy"

    again = await recon.run()
    [adopted] = _findings(again, "SUPPLIER_ORDER_ADOPTED")
    assert (adopted["subject"], adopted["order_id"]) == (placed.reference, str(waiting))


async def test_a_supplier_listing_cut_short_says_so(recon: Recon, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reconciliation, "SUPPLIER_PAGE_SIZE", 1)
    monkeypatch.setattr(reconciliation, "SUPPLIER_MAX_PAGES", 1)
    await _stray(recon)
    newest = await _stray(recon)

    run = await recon.run()
    assert run["status"] == "COMPLETED", run
    assert any("supplier orders: listing stopped at 1 pages of 1" in note for note in run["notes"]), run
    assert [f["subject"] for f in _findings(run, "SUPPLIER_ORDER_REVOKED")] == [newest.reference]
