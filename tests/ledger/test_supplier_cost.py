"""Supplier cost: every completed order (wallet or card) books its wholesale cost once, a full refund that
revokes its bundles credits it back once, and the margin report's totals equal the ledger's REVENUE and
SUPPLIER_COST movements over the period to the cent."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, text

from activities.contracts import OrderInput, SupplierCredit
from activities.ledger import LedgerActivities
from tests.b2c.conftest import B2C
from ttelgo import ledger
from ttelgo.models import Account, AccountKind, Order, Transfer

# The movements of REVENUE and SUPPLIER_COST over a period, straight from the posted transfers.
_ACCOUNT_MOVEMENT = text(
    """
    SELECT coalesce(sum(CASE WHEN c.kind = :kind THEN t.amount_minor ELSE -t.amount_minor END), 0)::bigint
    FROM transfers t
    JOIN accounts c ON c.id = t.credit_account_id
    JOIN accounts d ON d.id = t.debit_account_id
    WHERE :kind IN (c.kind, d.kind) AND t.currency = :currency
      AND t.kind IN ('SINGLE', 'POST_PENDING') AND t.created_at >= :start AND t.created_at < :end
    """
)


async def _transfer(b2c: B2C, transfer_id: str, within_s: float = 20) -> Transfer:
    """Revocation (and its credit) follows the refund's money, so it is waited for."""
    deadline = time.monotonic() + within_s
    while True:
        async with b2c.sessions() as session:
            found = await session.get(Transfer, transfer_id)
        if found is not None:
            return found
        assert time.monotonic() < deadline, f"no transfer {transfer_id}"
        await asyncio.sleep(0.2)


async def _kinds(b2c: B2C, transfer: Transfer) -> tuple[AccountKind, AccountKind]:
    async with b2c.sessions() as session:
        debit = await session.get_one(Account, transfer.debit_account_id)
        credit = await session.get_one(Account, transfer.credit_account_id)
    return debit.kind, credit.kind


async def _order_row(b2c: B2C, order_id: str) -> Order:
    async with b2c.sessions() as session:
        return await session.get_one(Order, uuid.UUID(order_id))


async def _supplier_transfers(b2c: B2C, order_id: str) -> list[str]:
    async with b2c.sessions() as session:
        return sorted(
            await session.scalars(
                select(Transfer.id).where(
                    Transfer.order_id == uuid.UUID(order_id), Transfer.code.like("supplier_%")
                )
            )
        )


async def _full_refund(b2c: B2C, order_id: str) -> str:
    response = await b2c.api.post(
        f"/api/v1/admin/orders/{order_id}/refund",
        json={"reason": "customer asked"},
        headers={**await b2c.admin(), "Idempotency-Key": str(uuid.uuid4())},
    )
    assert response.status_code == 201, response.text
    refund_id = response.json()["id"]
    b2c.workflows.append(f"refund-{refund_id}")
    await b2c.wait_for(f"/api/v1/admin/refunds/{refund_id}", await b2c.admin(), "SUCCEEDED")
    return refund_id


async def _margin(b2c: B2C, **params: Any) -> dict[str, Any]:
    response = await b2c.api.get("/api/v1/admin/reports/margin", params=params, headers=await b2c.admin())
    assert response.status_code == 200, response.text
    return response.json()


async def test_costs_booked_once_credited_back_and_the_margin_reconciles_to_the_ledger(b2c: B2C) -> None:
    start = datetime.now(UTC)
    b2b = await b2c.wallet_world()
    vendor = await b2b.new_vendor(balance=100_000)
    wallet = await b2b.order(vendor, quantity=2)
    assert wallet.status_code == 201 and wallet.json()["status"] == "COMPLETED", wallet.text
    wallet_order = wallet.json()
    card_order = await b2c.paid_order(await b2c.customer())
    kept_order = await b2c.paid_order(await b2c.customer())  # not refunded: its cost stays

    money = LedgerActivities(b2c.sessions)
    costs: dict[str, int] = {}
    for order in (wallet_order, card_order, kept_order):
        row = await _order_row(b2c, order["id"])
        assert row.wholesale_cost_minor and row.wholesale_cost_minor > 0
        costs[order["id"]] = row.wholesale_cost_minor
        booked = await _transfer(b2c, f"order-{order['id']}:supplier-cost")
        assert (booked.amount_minor, booked.currency) == (row.wholesale_cost_minor, row.currency)
        assert await _kinds(b2c, booked) == (AccountKind.SUPPLIER_PAYABLE, AccountKind.SUPPLIER_COST)
        # A retried activity (a worker restart re-runs it) finds its own transfer and books nothing more.
        again = OrderInput(
            order_id=row.id,
            workflow_id=row.workflow_id,
            channel=row.channel,
            vendor_id=row.vendor_id,
            user_id=row.user_id,
            bundle_code=row.bundle_code,
            quantity=row.quantity,
            unit_price_minor=row.unit_price_minor,
            currency=row.currency,
            wholesale_unit_minor=row.wholesale_cost_minor // row.quantity,
            supplier_task_queue=b2c.settings.esimgo_task_queue,
        )
        await money.book_supplier_cost(again)
        assert await _supplier_transfers(b2c, order["id"]) == [f"order-{order['id']}:supplier-cost"]

    # Full refunds revoke the bundles with refundToBalance: their wholesale cost comes back, once.
    for order in (wallet_order, card_order):
        refund_id = await _full_refund(b2c, order["id"])
        credit = await _transfer(b2c, f"refund-{refund_id}:supplier-cost")
        assert credit.amount_minor == costs[order["id"]]
        assert await _kinds(b2c, credit) == (AccountKind.SUPPLIER_COST, AccountKind.SUPPLIER_PAYABLE)
        revoked = SupplierCredit(
            refund_workflow_id=f"refund-{refund_id}",
            order_id=uuid.UUID(order["id"]),
            revoked=order["quantity"],
        )
        await money.credit_supplier_cost(revoked)
        assert len(await _supplier_transfers(b2c, order["id"])) == 2

    end = datetime.now(UTC) + timedelta(seconds=1)
    period = {"from": start.isoformat(), "to": end.isoformat()}
    by_channel = await _margin(b2c, **period, group_by="channel")
    currency = wallet_order["currency"]
    async with b2c.sessions() as session:
        movement = {
            kind: await session.scalar(
                _ACCOUNT_MOVEMENT, {"kind": kind, "currency": currency, "start": start, "end": end}
            )
            for kind in ("REVENUE", "SUPPLIER_COST")
        }
        assert await ledger.check_invariants(session) == []
    (total,) = [t for t in by_channel["totals"] if t["currency"] == currency]
    # The ledger's cost account moves by exactly the costs booked less the credits, to the cent ...
    assert total["supplier_cost_minor"] - total["supplier_credits_minor"] == movement["SUPPLIER_COST"]
    assert movement["SUPPLIER_COST"] == costs[kept_order["id"]]
    # ... and its revenue account by the wallet orders' revenue less their refunds (card money is at Stripe).
    (wallet_row,) = [r for r in by_channel["rows"] if r["key"] == "B2B" and r["currency"] == currency]
    assert wallet_row["revenue_minor"] - wallet_row["refunds_minor"] == movement["REVENUE"] == 0
    # The margin is what was kept less what the supplier cost account says we owe for it.
    assert (
        total["margin_minor"] == total["revenue_minor"] - total["refunds_minor"] - movement["SUPPLIER_COST"]
    )

    by_vendor = await _margin(b2c, **period, group_by="vendor")
    (ours,) = [r for r in by_vendor["rows"] if r["key"] == vendor.id]
    assert ours == {
        "key": vendor.id,
        "currency": currency,
        "revenue_minor": wallet_order["total_minor"],
        "refunds_minor": wallet_order["total_minor"],
        "supplier_cost_minor": costs[wallet_order["id"]],
        "supplier_credits_minor": costs[wallet_order["id"]],
        "margin_minor": 0,
    }
    for group_by in ("vendor", "bundle", "country"):
        report = await _margin(b2c, **period, group_by=group_by)
        assert report["totals"] == by_channel["totals"], group_by
    by_country = await _margin(b2c, **period, group_by="country")
    assert {r["key"] for r in by_country["rows"]} == {"FR"}


async def test_margin_report_refuses_bad_periods_and_non_admins(b2c: B2C) -> None:
    now = datetime.now(UTC)
    admin = await b2c.admin()
    path = "/api/v1/admin/reports/margin"
    backwards = {"from": now.isoformat(), "to": (now - timedelta(days=1)).isoformat()}
    too_long = {"from": (now - timedelta(days=400)).isoformat(), "to": now.isoformat()}
    naive = {"from": "2026-01-01T00:00:00"}
    for params in (backwards, too_long, naive, {"group_by": "planet"}):
        response = await b2c.api.get(path, params=params, headers=admin)
        assert response.status_code == 422, (params, response.text)
    customer = await b2c.customer()
    assert (await b2c.api.get(path, headers=customer.headers)).status_code in (401, 403)
    assert (await b2c.api.get(path)).status_code == 401
