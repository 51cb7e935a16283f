"""Multi-line supplier orders none of ours claims: adopted only by the very call that sent them (all its
rows at once), otherwise every line's unused bundles go back to the supplier balance."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import update

from tests.reconciliation.conftest import BUNDLE, Recon
from tests.support.esimgo import SIM_API_KEY
from ttelgo.esimgo import SupplierOrder
from ttelgo.esimgo.types import PurchaseLine
from ttelgo.models import Order

OTHER = "esim_1GB_7D_DE_V2"


def _findings(run: dict, kind: str) -> list[dict]:
    return [f for f in run["findings"] if f["kind"] == kind]


async def _stray(recon: Recon, *lines: tuple[str, int]) -> SupplierOrder:
    """A multi-line supplier order none of ours recorded: a batch's call that committed after our timeout."""
    client = recon.sim.client()
    try:
        return await client.create_order_lines([PurchaseLine(bundle_name=n, quantity=q) for n, q in lines])
    finally:
        await client.aclose()


async def _call(recon: Recon, *lines: tuple[str, int], sent_at: datetime) -> list[uuid.UUID]:
    """Orders whose one call (these lines, in this order) is in doubt, their workflows running."""
    call_id = uuid.uuid4()
    orders = []
    for line, (name, quantity) in enumerate(lines):
        order_id = await recon.vendor_order_waiting_for_supplier(quantity=quantity, workflow=True)
        async with recon.world.sessions() as session, session.begin():
            await session.execute(
                update(Order)
                .where(Order.id == order_id)
                .values(
                    bundle_code=name,
                    supplier_batch_id=call_id,
                    supplier_order_line=line,
                    supplier_call_sent_at=sent_at,
                )
            )
        orders.append(order_id)
    return orders


def _states(recon: Recon, iccid: str) -> dict[str, list[str]]:
    response = httpx.get(f"{recon.sim.api_url}/esims/{iccid}/bundles", headers={"X-API-Key": SIM_API_KEY})
    response.raise_for_status()
    return {b["name"]: [a["bundleState"] for a in b["assignments"]] for b in response.json()["bundles"]}


async def test_a_multi_line_stray_nobody_sent_has_every_line_revoked(recon: Recon) -> None:
    sent_at = datetime.now(UTC) - timedelta(seconds=5)
    # Waiting, but not that call: one order of one of its lines, and a call of its lines the other way round.
    lone = await recon.vendor_order_waiting_for_supplier(workflow=True)
    swapped = await _call(recon, (OTHER, 2), (BUNDLE, 1), sent_at=sent_at)
    before = recon.balance()
    placed = await _stray(recon, (BUNDLE, 1), (OTHER, 2))

    run = await recon.run()

    assert run["status"] == "COMPLETED", run
    assert _findings(run, "SUPPLIER_ORDER_ADOPTED") == []
    [revoked] = _findings(run, "SUPPLIER_ORDER_REVOKED")
    assert revoked["subject"] == placed.reference
    assert sorted(revoked["detail"]["iccids"]) == sorted(e.iccid for e in placed.esims)
    assert revoked["detail"]["lines"] == [{"bundle": BUNDLE, "quantity": 1}, {"bundle": OTHER, "quantity": 2}]
    first, second = placed.lines
    assert [_states(recon, e.iccid) for e in first.esims] == [{BUNDLE: ["revoked"]}]
    assert [_states(recon, e.iccid) for e in second.esims] == [{OTHER: ["revoked"]}] * 2
    assert recon.balance() == before, "every line's bundles went back to the balance"
    for order_id in (lone, *swapped):
        assert (await recon.order_row(order_id)).supplier_order_reference is None


async def test_a_multi_line_stray_is_adopted_by_its_waiting_call_for_all_its_orders(recon: Recon) -> None:
    orders = await _call(recon, (BUNDLE, 1), (OTHER, 2), sent_at=datetime.now(UTC) - timedelta(seconds=5))
    placed = await _stray(recon, (BUNDLE, 1), (OTHER, 2))
    spent = recon.balance()

    run = await recon.run()

    assert run["status"] == "COMPLETED", run
    assert _findings(run, "SUPPLIER_ORDER_REVOKED") == []
    [adopted] = _findings(run, "SUPPLIER_ORDER_ADOPTED")
    assert adopted["subject"] == placed.reference
    assert adopted["detail"]["orders"] == [str(o) for o in orders]
    rows = [await recon.order_row(o) for o in orders]
    assert [(r.supplier_order_reference, r.supplier_order_line, r.supplier_call_sent_at) for r in rows] == [
        (placed.reference, 0, None),
        (placed.reference, 1, None),
    ]
    for order_id in orders:
        [audit] = await recon.audit(target_type="order", target_id=str(order_id))
        assert audit.action == "reconciliation.supplier_order.adopt"
    assert recon.balance() == spent, "adopted, nothing revoked"

    again = await recon.run()
    assert _findings(again, "SUPPLIER_ORDER_ADOPTED") == _findings(again, "SUPPLIER_ORDER_REVOKED") == []


async def test_a_one_line_stray_is_never_adopted_by_one_row_of_a_call_of_several(recon: Recon) -> None:
    """A row in doubt in a call of several is that call's: adopting a one-line stray for it alone would make
    the call's own retry miss the rest of its supplier order and buy the other lines again."""
    call = await _call(
        recon, (OTHER, 2), (BUNDLE, 1), (OTHER, 1), sent_at=datetime.now(UTC) - timedelta(seconds=5)
    )
    placed = await _stray(recon, (BUNDLE, 1))

    run = await recon.run()

    assert run["status"] == "COMPLETED", run
    assert _findings(run, "SUPPLIER_ORDER_ADOPTED") == []
    [revoked] = _findings(run, "SUPPLIER_ORDER_REVOKED")
    assert revoked["subject"] == placed.reference
    rows = [await recon.order_row(o) for o in call]
    assert [(r.supplier_order_reference, r.supplier_order_line) for r in rows] == [
        (None, 0),
        (None, 1),
        (None, 2),
    ]
