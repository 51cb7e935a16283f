"""The margin report: revenue, refunds and supplier cost of orders over a period, grouped, per currency.

Everything is read from the ledger's posted transfers on REVENUE and SUPPLIER_COST, so the report's totals
equal those accounts' movements in the period to the cent, for both channels: a wallet order's revenue is
its posted hold and its refunds go back to the wallet; a card order's sale is booked CARD_CLEARING →
REVENUE when it completes and each card refund that went through takes its amount back out (a refund a
bank returned later puts it back: counted as a negative refund).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

# The transfer codes of a card order's money (booked by activities/ledger.py).
CARD_SALE_CODE = "card_sale"
CARD_REFUND_CODE = "card_refund"
CARD_REFUND_REVERSED_CODE = "card_refund_reversed"  # a bank returned a card refund: the sale stands again


class GroupBy(StrEnum):
    CHANNEL = "channel"
    VENDOR = "vendor"
    BUNDLE = "bundle"
    COUNTRY = "country"


# Fixed expressions only: the grouping never comes from the request as SQL.
_KEYS = {
    GroupBy.CHANNEL: "o.channel",
    GroupBy.VENDOR: "o.vendor_id::text",
    GroupBy.BUNDLE: "o.bundle_code",
    # A bundle for one country is that country's; one spanning several is reported as MULTI.
    GroupBy.COUNTRY: "CASE WHEN cardinality(b.country_isos) = 1 THEN b.country_isos[1] ELSE 'MULTI' END",
}

_POSTED = "t.kind IN ('SINGLE', 'POST_PENDING') AND t.created_at >= :start AND t.created_at < :end"
_FACTS = f"""
    SELECT t.order_id, t.currency,
           CASE WHEN t.code = :reversed THEN 'refunds' ELSE 'revenue' END AS metric,
           CASE WHEN t.code = :reversed THEN -t.amount_minor ELSE t.amount_minor END AS amount
    FROM transfers t JOIN accounts a ON a.id = t.credit_account_id
    WHERE a.kind = 'REVENUE' AND {_POSTED}
    UNION ALL
    SELECT t.order_id, t.currency, 'refunds', t.amount_minor
    FROM transfers t JOIN accounts a ON a.id = t.debit_account_id
    WHERE a.kind = 'REVENUE' AND {_POSTED}
    UNION ALL
    SELECT t.order_id, t.currency, 'supplier_cost', t.amount_minor
    FROM transfers t JOIN accounts a ON a.id = t.credit_account_id
    WHERE a.kind = 'SUPPLIER_COST' AND {_POSTED}
    UNION ALL
    SELECT t.order_id, t.currency, 'supplier_credits', t.amount_minor
    FROM transfers t JOIN accounts a ON a.id = t.debit_account_id
    WHERE a.kind = 'SUPPLIER_COST' AND {_POSTED}
"""


@dataclass
class MarginLine:
    key: str | None  # None: facts of no order (none are booked today) or a card order's missing vendor
    currency: str
    revenue_minor: int = 0
    refunds_minor: int = 0
    supplier_cost_minor: int = 0
    supplier_credits_minor: int = 0

    @property
    def margin_minor(self) -> int:
        return (
            self.revenue_minor - self.refunds_minor - self.supplier_cost_minor + self.supplier_credits_minor
        )

    def add(self, other: MarginLine) -> None:
        self.revenue_minor += other.revenue_minor
        self.refunds_minor += other.refunds_minor
        self.supplier_cost_minor += other.supplier_cost_minor
        self.supplier_credits_minor += other.supplier_credits_minor


@dataclass
class MarginReport:
    lines: list[MarginLine] = field(default_factory=list)

    @property
    def totals(self) -> list[MarginLine]:
        """One line per currency: amounts in different currencies are never added."""
        by_currency: dict[str, MarginLine] = {}
        for line in self.lines:
            by_currency.setdefault(line.currency, MarginLine(key=None, currency=line.currency)).add(line)
        return [by_currency[c] for c in sorted(by_currency)]


async def margin_report(
    session: AsyncSession, start: datetime, end: datetime, group_by: GroupBy
) -> MarginReport:
    """Posted transfers made in [start, end). One statement, so one snapshot."""
    query = text(
        f"""
        SELECT {_KEYS[group_by]} AS key, f.currency, f.metric, sum(f.amount)::bigint
        FROM ({_FACTS}) f
        LEFT JOIN orders o ON o.id = f.order_id
        LEFT JOIN catalogue_bundles b ON b.code = o.bundle_code
        GROUP BY 1, 2, 3
        """
    )
    lines: dict[tuple[str | None, str], MarginLine] = {}
    for key, currency, metric, amount in await session.execute(
        query, {"start": start, "end": end, "reversed": CARD_REFUND_REVERSED_CODE}
    ):
        line = lines.setdefault((key, currency), MarginLine(key=key, currency=currency))
        setattr(line, f"{metric}_minor", amount)
    return MarginReport(sorted(lines.values(), key=lambda line: (line.currency, line.key or "")))
