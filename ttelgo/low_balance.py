"""Low-balance alerts: did an order's wallet debit take the available balance below the vendor's threshold?

Posting a hold does not move the available balance (the hold already took it out), so the crossing is
judged per order: the available balance just after the posting (the statement row written under the
wallet lock), against what it was with this order's money still in it (that plus the amount posted).
At or above the threshold before, below it after: one crossing, decided from the stored row, so a retried
step answers the same. NULL thresholds never alert.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ttelgo.models import LedgerEntryType, Vendor, VendorLedgerEntry


@dataclass(frozen=True)
class LowBalance:
    vendor_id: uuid.UUID
    balance_minor: int
    available_minor: int
    threshold_minor: int
    currency: str
    transfer_id: str  # the posting that crossed: names the crossing (e-mail dedupe key)


def crossed(threshold_minor: int | None, available_after_minor: int, debited_minor: int) -> bool:
    if threshold_minor is None or debited_minor <= 0:
        return False
    return available_after_minor < threshold_minor <= available_after_minor + debited_minor


async def order_debit_crossing(
    session: AsyncSession, *, order_id: uuid.UUID | None = None, transfer_id: str | None = None
) -> LowBalance | None:
    """The crossing an order's wallet debit (its posted hold, by order or by posting id) caused, if any."""
    query = select(VendorLedgerEntry).where(VendorLedgerEntry.entry_type == LedgerEntryType.ORDER_DEBIT)
    if transfer_id is not None:
        query = query.where(VendorLedgerEntry.transfer_id == transfer_id)
    elif order_id is not None:
        query = query.where(VendorLedgerEntry.order_id == order_id)
    else:
        return None
    entry = await session.scalar(query.order_by(VendorLedgerEntry.id.desc()).limit(1))
    if entry is None:
        return None
    vendor = await session.get(Vendor, entry.vendor_id)
    if vendor is None:
        return None
    threshold = vendor.low_balance_threshold_minor
    if threshold is None or not crossed(threshold, entry.available_after_minor, -entry.amount_minor):
        return None
    return LowBalance(
        vendor_id=vendor.id,
        balance_minor=entry.balance_after_minor,
        available_minor=entry.available_after_minor,
        threshold_minor=threshold,
        currency=entry.currency,
        transfer_id=entry.transfer_id,
    )
