"""An invoice bills each order by the billing mode in force when it was placed: a switch mid-month neither
invoices the PREPAID orders (paid from the balance) nor drops the POSTPAID ones (bought on credit)."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import select

from tests.b2b.conftest import B2B, VendorHandle
from tests.b2b.test_invoices import _completed_order, _into_period, _run
from ttelgo.models import BillingMode, Channel, Invoice, LedgerEntryType, Order, VendorLedgerEntry


async def _switch(b2b: B2B, vendor: VendorHandle, mode: str, credit_limit: int) -> None:
    switched = await b2b.api.patch(
        f"/api/v1/admin/vendors/{vendor.id}/billing",
        json={"billing_mode": mode, "credit_limit_minor": credit_limit},
        headers=b2b.admin,
    )
    assert switched.status_code == 200 and switched.json()["billing_mode"] == mode, switched.text


async def _debit(b2b: B2B, order_id: str) -> int:
    async with b2b.sessions() as session:
        amount = await session.scalar(
            select(VendorLedgerEntry.amount_minor).where(
                VendorLedgerEntry.order_id == uuid.UUID(order_id),
                VendorLedgerEntry.entry_type == LedgerEntryType.ORDER_DEBIT,
            )
        )
    assert amount is not None and amount < 0
    return -amount


async def _refunded(b2b: B2B, vendor: VendorHandle, order_id: str) -> None:
    refund = await b2b.api.post(
        f"/api/v1/vendor/orders/{order_id}/refund",
        json={"reason": "the traveller cancelled"},
        headers={**vendor.headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert refund.status_code == 201, refund.text
    for _ in range(200):  # the refund credits the wallet from its workflow
        async with b2b.sessions() as session:
            credited = await session.scalar(
                select(VendorLedgerEntry.id).where(
                    VendorLedgerEntry.order_id == uuid.UUID(order_id),
                    VendorLedgerEntry.entry_type == LedgerEntryType.REFUND,
                )
            )
        if credited:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the refund never reached the ledger")


async def test_a_mid_month_switch_bills_each_order_by_the_mode_it_was_placed_under(b2b: B2B) -> None:
    # PREPAID → POSTPAID: the order (and the refund of an order) placed before the switch is not billed.
    upgraded = await b2b.new_vendor(balance=100_000)
    prepaid_order = await _completed_order(b2b, upgraded)
    refunded_prepaid = await _completed_order(b2b, upgraded)
    await _switch(b2b, upgraded, "POSTPAID", 100_000)
    on_credit = await _completed_order(b2b, upgraded, quantity=2)
    await _refunded(b2b, upgraded, refunded_prepaid)

    # POSTPAID → PREPAID: the order bought on credit is still billed, though the vendor is PREPAID now.
    downgraded = await b2b.new_vendor(billing_mode="POSTPAID", credit_limit=100_000)
    credit_order = await _completed_order(b2b, downgraded)
    await b2b.adjust(downgraded.id, 100_000)
    await _switch(b2b, downgraded, "PREPAID", 0)
    await _completed_order(b2b, downgraded)

    # Each order carries the mode it was placed under (orders.billing_mode): the invoice reads that.
    async with b2b.sessions() as session:
        modes = {
            str(o.id): o.billing_mode
            for o in await session.scalars(select(Order).where(Order.channel == Channel.B2B))
        }
    assert modes[prepaid_order] is modes[refunded_prepaid] is BillingMode.PREPAID
    assert modes[on_credit] is modes[credit_order] is BillingMode.POSTPAID

    await _into_period(b2b)
    result = await _run(b2b)
    assert len(result.created) == 2
    async with b2b.sessions() as session:
        invoices = {str(i.vendor_id): i for i in await session.scalars(select(Invoice))}
    assert set(invoices) == {upgraded.id, downgraded.id}

    up = invoices[upgraded.id]
    assert (up.debits_minor, up.refunds_minor) == (await _debit(b2b, on_credit), 0)
    assert up.total_minor == await _debit(b2b, on_credit) and await _debit(b2b, prepaid_order) > 0
    detail = (await b2b.api.get(f"/api/v1/vendor/invoices/{up.id}", headers=upgraded.headers)).json()
    assert [line["quantity"] for line in detail["lines"]] == [2]
    down = invoices[downgraded.id]
    assert (down.debits_minor, down.refunds_minor) == (await _debit(b2b, credit_order), 0)
    assert await b2b.invariants() == []
