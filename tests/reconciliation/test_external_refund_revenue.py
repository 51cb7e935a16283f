"""A refund made in the Stripe dashboard, once reconciliation has recorded it, takes its amount out of
REVENUE like a refund of ours, once however many runs see it, so the margin report counts it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from tests.reconciliation.conftest import Recon
from tests.reconciliation.test_stripe import _dashboard, _payment
from ttelgo.ledger.margin import CARD_REFUND_CODE
from ttelgo.models import Account, AccountKind, Refund, Transfer


async def _card_refunds(recon: Recon, order_id: str) -> list[Transfer]:
    async with recon.world.sessions() as session:
        found = await session.scalars(
            select(Transfer).where(
                Transfer.order_id == uuid.UUID(order_id), Transfer.code == CARD_REFUND_CODE
            )
        )
        return list(found)


async def _margin(recon: Recon, start: datetime) -> dict[str, Any]:
    end = datetime.now(UTC) + timedelta(seconds=1)
    response = await recon.api.get(
        "/api/v1/admin/reports/margin",
        params={"from": start.isoformat(), "to": end.isoformat(), "group_by": "channel"},
        headers=await recon.world.admin(),
    )
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_dashboard_refund_is_booked_out_of_revenue_once(recon: Recon) -> None:
    start = datetime.now(UTC)
    order = await recon.world.paid_order(await recon.world.customer())
    payment = await _payment(recon, order["id"])
    partial = _dashboard(recon).v1.refunds.create(
        params={"payment_intent": payment.provider_payment_id, "amount": 150}
    )

    await recon.run()
    async with recon.world.sessions() as session:
        refund = await session.scalar(select(Refund).where(Refund.provider_refund_id == partial.id))
    assert refund is not None
    [booked] = await _card_refunds(recon, order["id"])
    assert booked.id == f"refund-{refund.id}:card-refund" and booked.amount_minor == 150
    async with recon.world.sessions() as session:
        debited = await session.get_one(Account, booked.debit_account_id)
    assert debited.kind is AccountKind.REVENUE

    await recon.run()  # a second run sees the same refund in Stripe: nothing booked twice
    assert len(await _card_refunds(recon, order["id"])) == 1
    (total,) = (await _margin(recon, start))["totals"]
    assert total["refunds_minor"] == 150 and total["revenue_minor"] == order["total_minor"]
