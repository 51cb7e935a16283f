"""Supplier cost and card revenue: every completed order (wallet or card) books its wholesale cost once, a
card order its sale (CARD_CLEARING → REVENUE) once, a full refund that revokes its bundles credits the cost
back once, a card refund takes the sale back out once, and the margin report's totals equal the ledger's
REVENUE and SUPPLIER_COST movements over the period to the cent, for both channels."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text

from activities.contracts import OrderInput, SupplierCredit
from activities.ledger import LedgerActivities, book_card_refund
from tests.b2c.conftest import B2C
from tests.b2c.test_refunds import _refund_event
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


async def _order_transfers(b2c: B2C, order_id: str) -> list[str]:
    async with b2c.sessions() as session:
        return sorted(
            await session.scalars(select(Transfer.id).where(Transfer.order_id == uuid.UUID(order_id)))
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

    for order in (card_order, kept_order):  # a card order's sale is revenue in the ledger, booked once
        sale = await _transfer(b2c, f"order-{order['id']}:card-sale")
        assert (sale.amount_minor, sale.code) == (order["total_minor"], "card_sale")
        assert await _kinds(b2c, sale) == (AccountKind.CARD_CLEARING, AccountKind.REVENUE)
    assert f"order-{wallet_order['id']}:card-sale" not in await _order_transfers(b2c, wallet_order["id"])

    # Full refunds revoke the bundles with refundToBalance: their wholesale cost comes back, once.
    for order in (wallet_order, card_order):
        refund_id = await _full_refund(b2c, order["id"])
        if order is card_order:  # the card refund's money leaves REVENUE, once however often it is booked
            back = await _transfer(b2c, f"refund-{refund_id}:card-refund")
            assert back.amount_minor == order["total_minor"]
            assert await _kinds(b2c, back) == (AccountKind.REVENUE, AccountKind.CARD_CLEARING)
            before = await _order_transfers(b2c, order["id"])
            await book_card_refund(b2c.sessions, uuid.UUID(refund_id))
            assert await _order_transfers(b2c, order["id"]) == before
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
        # Another refund's credit for the same bundles finds the whole cost credited already: nothing more.
        other = SupplierCredit(refund_workflow_id="refund-other", order_id=revoked.order_id, revoked=1)
        await money.credit_supplier_cost(other)
        assert len(await _supplier_transfers(b2c, order["id"])) == 2, "never more than the booked cost"

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
    # ... and its revenue account by both channels' sales less their refunds: only the kept order stays.
    assert total["revenue_minor"] - total["refunds_minor"] == movement["REVENUE"] == kept_order["total_minor"]
    rows = {r["key"]: r for r in by_channel["rows"] if r["currency"] == currency}
    assert rows["B2B"]["revenue_minor"] == rows["B2B"]["refunds_minor"] == wallet_order["total_minor"]
    assert rows["B2C"]["revenue_minor"] == card_order["total_minor"] + kept_order["total_minor"]
    assert rows["B2C"]["refunds_minor"] == card_order["total_minor"]
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


async def test_two_refunds_crediting_one_order_at_once_credit_its_cost_once(b2c: B2C) -> None:
    """Two refund workflows of one order reaching CREDIT_SUPPLIER_COST together: the remainder is read and
    credited under the order's lock, so only one of them credits it."""
    order = await b2c.paid_order(await b2c.customer(), quantity=2)
    booked = await _transfer(b2c, f"order-{order['id']}:supplier-cost")
    money = LedgerActivities(b2c.sessions)
    credits = [
        SupplierCredit(refund_workflow_id=f"refund-race-{n}", order_id=uuid.UUID(order["id"]), revoked=2)
        for n in range(4)
    ]
    await asyncio.gather(*(money.credit_supplier_cost(credit) for credit in credits))
    async with b2c.sessions() as session:
        credited = await session.scalar(
            select(func.sum(Transfer.amount_minor)).where(
                Transfer.order_id == uuid.UUID(order["id"]), Transfer.code == "supplier_credit"
            )
        )
        assert await ledger.check_invariants(session) == []
    assert credited == booked.amount_minor


async def test_a_reversed_card_refund_puts_its_revenue_back_and_the_margin_counts_it(b2c: B2C) -> None:
    start = datetime.now(UTC)
    order = await b2c.paid_order(await b2c.customer())
    response = await b2c.api.post(
        f"/api/v1/admin/orders/{order['id']}/refund",
        json={"reason": "customer asked", "amount_minor": 200},
        headers={**await b2c.admin(), "Idempotency-Key": str(uuid.uuid4())},
    )
    assert response.status_code == 201, response.text
    b2c.workflows.append(f"refund-{response.json()['id']}")
    refund = await b2c.wait_for(
        f"/api/v1/admin/refunds/{response.json()['id']}", await b2c.admin(), "SUCCEEDED"
    )
    out = await _transfer(b2c, f"refund-{refund['id']}:card-refund")
    assert out.amount_minor == 200 and await _kinds(b2c, out) == (
        AccountKind.REVENUE,
        AccountKind.CARD_CLEARING,
    )
    failed = _refund_event("refund.failed", refund, "failed", f"refund-{refund['id']}")
    assert (await b2c.deliver(failed)).status_code == 200
    await b2c.wait_for(f"/api/v1/admin/refunds/{refund['id']}", await b2c.admin(), "REVERSED")

    back = await _transfer(b2c, f"refund-{refund['id']}:card-refund-reversed")
    assert (back.amount_minor, back.code) == (200, "card_refund_reversed")
    assert await _kinds(b2c, back) == (AccountKind.CARD_CLEARING, AccountKind.REVENUE)
    before = await _order_transfers(b2c, order["id"])
    await book_card_refund(b2c.sessions, uuid.UUID(refund["id"]))  # booked again: nothing more
    assert await _order_transfers(b2c, order["id"]) == before

    end = datetime.now(UTC) + timedelta(seconds=1)
    report = await _margin(b2c, **{"from": start.isoformat(), "to": end.isoformat()}, group_by="channel")
    (row,) = [r for r in report["rows"] if r["key"] == "B2C" and r["currency"] == order["currency"]]
    cost = (await _order_row(b2c, order["id"])).wholesale_cost_minor
    # The reversal counts as a negative refund: the sale stands whole, as REVENUE says.
    assert (row["revenue_minor"], row["refunds_minor"]) == (order["total_minor"], 0)
    assert row["margin_minor"] == order["total_minor"] - cost
    async with b2c.sessions() as session:
        revenue = await session.scalar(
            _ACCOUNT_MOVEMENT, {"kind": "REVENUE", "currency": order["currency"], "start": start, "end": end}
        )
    assert revenue == order["total_minor"]
