"""Supplier orders no order of ours claims: revoked to the supplier balance, or adopted by an order
still waiting for one."""

from __future__ import annotations

from tests.reconciliation.conftest import BUNDLE, Recon


def _findings(run: dict, kind: str) -> list[dict]:
    return [f for f in run["findings"] if f["kind"] == kind]


async def test_an_unclaimed_supplier_order_is_revoked_to_the_balance_once(recon: Recon) -> None:
    before = recon.balance()
    # A late commit after our timeout: the supplier holds an order none of ours knows.
    client = recon.sim.client()
    try:
        placed = await client.create_order(BUNDLE, 1)
    finally:
        await client.aclose()
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
    client = recon.sim.client()
    try:
        placed = await client.create_order(BUNDLE, 1)
    finally:
        await client.aclose()
    [esim] = placed.esims
    recon.sim.admin.post(f"/esims/{esim.iccid}/usage", json={"bytes": 1000}).raise_for_status()
    spent = recon.balance()

    run = await recon.run()
    [used] = _findings(run, "SUPPLIER_BUNDLE_USED")
    assert used["subject"] == placed.reference and used["action"] == "REPORTED"
    assert _findings(run, "SUPPLIER_ORDER_REVOKED") == []
    assert recon.balance() == spent
    assert await recon.audit(target_type="supplier_order", target_id=placed.reference) == []


async def test_a_supplier_order_an_order_of_ours_waits_for_is_adopted(recon: Recon) -> None:
    waiting = await recon.vendor_order_waiting_for_supplier()
    other_quantity = await recon.vendor_order_waiting_for_supplier(quantity=2)  # not the same purchase
    client = recon.sim.client()
    try:
        placed = await client.create_order(BUNDLE, 1)
    finally:
        await client.aclose()
    spent = recon.balance()

    run = await recon.run()
    [adopted] = _findings(run, "SUPPLIER_ORDER_ADOPTED")
    assert adopted["subject"] == placed.reference and adopted["order_id"] == str(waiting)
    assert _findings(run, "SUPPLIER_ORDER_REVOKED") == []
    assert (await recon.order_row(waiting)).supplier_order_reference == placed.reference
    assert (await recon.order_row(other_quantity)).supplier_order_reference is None
    assert recon.balance() == spent, "adopted, so nothing was revoked"
    [audit] = await recon.audit(target_type="order", target_id=str(waiting))
    assert audit.action == "reconciliation.supplier_order.adopt"
    assert audit.after == {"supplier_order_reference": placed.reference}
    # Neither order has a workflow: both are reported stuck for an operator as well, the adopted one
    # from the next run on (it has just been touched, so this run leaves it to its workflow).
    assert {f["subject"] for f in _findings(run, "ORDER_STUCK")} == {str(other_quantity)}

    again = await recon.run()
    assert _findings(again, "SUPPLIER_ORDER_ADOPTED") == []
    assert {f["subject"] for f in _findings(again, "ORDER_STUCK")} == {str(waiting), str(other_quantity)}
    assert len(await recon.audit(target_type="order", target_id=str(waiting))) == 1
