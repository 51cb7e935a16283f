"""Adoption keeps to the order's kind: a purchase of new eSIMs is never handed to a waiting top-up, and a
top-up's purchase (its bundle applied to an eSIM we hold) never to an order of new eSIMs, only to the
top-up of that very eSIM."""

from __future__ import annotations

from tests.reconciliation.conftest import BUNDLE, Recon


async def _held_iccid(recon: Recon) -> str:
    """An eSIM a vendor bought and we hold."""
    b2b = await recon.world.wallet_world()
    vendor = await b2b.new_vendor(balance=100_000)
    order = await b2b.order(vendor)
    assert order.status_code == 201 and order.json()["status"] == "COMPLETED", order.text
    [esim] = order.json()["esims"]
    return str(esim["iccid"])


async def test_each_purchase_goes_to_a_waiting_order_of_its_own_kind(recon: Recon) -> None:
    target = await _held_iccid(recon)
    other = await _held_iccid(recon)
    # The older waiting orders would be first in line if the kind did not count.
    topup = await recon.vendor_order_waiting_for_supplier(workflow=True, topup_of=target)
    other_topup = await recon.vendor_order_waiting_for_supplier(workflow=True, topup_of=other)
    plain = await recon.vendor_order_waiting_for_supplier(workflow=True)
    client = recon.sim.client()
    try:
        new_esims = await client.create_order(BUNDLE, 1)
        applied = await client.create_order(BUNDLE, 1, iccids=[target])
    finally:
        await client.aclose()

    run = await recon.run()
    adopted = {f["subject"]: f["order_id"] for f in run["findings"] if f["kind"] == "SUPPLIER_ORDER_ADOPTED"}
    assert adopted == {new_esims.reference: str(plain), applied.reference: str(topup)}
    assert (await recon.order_row(plain)).supplier_order_reference == new_esims.reference
    assert (await recon.order_row(topup)).supplier_order_reference == applied.reference
    assert (await recon.order_row(other_topup)).supplier_order_reference is None
