"""Whole-order checks, beside the ledger's: what a finished order promises its buyer.

- COMPLETED (or partly refunded) means delivered: exactly `quantity` eSIMs of its own (a top-up: the
  eSIM it topped up, and none of its own); no order holds some but not all of its eSIMs.
- A card order that was paid has a payment Stripe confirmed, and one that failed after payment gave the
  money back, unless Stripe refused (REFUND_FAILED, which an admin then refunds).
- Refunds add up: an order's refunded amount is what its refunds reserved or returned (or, for an
  automatic refund after a failed provisioning, what its payment says went back), and REFUNDED means all
  of it.

Read-only, one SQL statement per rule; run from the CLI (`ttelgo orders check`) or a test.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

_RULES: dict[str, str] = {
    "eSIMs delivered": """
        SELECT o.id, o.status, o.quantity, count(e.id)
        FROM orders o LEFT JOIN esims e ON e.order_id = o.id
            -- a top-up delivers onto the eSIM it names, which belongs to an earlier order
            OR (o.kind = 'TOPUP' AND o.status IN ('COMPLETED', 'PARTIALLY_REFUNDED') AND e.iccid = o.target_iccid)
        GROUP BY o.id
        HAVING (o.status IN ('COMPLETED', 'PARTIALLY_REFUNDED') AND count(e.id) <> o.quantity)
            OR count(e.id) NOT IN (0, o.quantity)
        ORDER BY o.id
    """,
    "paid card orders have a succeeded payment": """
        SELECT o.id, o.status, o.failure_code, NULL
        FROM orders o
        WHERE o.channel = 'B2C'
          AND (o.status IN ('PAID', 'PROVISIONING', 'COMPLETED', 'REFUNDED', 'PARTIALLY_REFUNDED',
                            'NEEDS_ATTENTION')
               OR (o.status = 'FAILED' AND o.failure_code = 'REFUND_FAILED'))
          AND NOT EXISTS (
              SELECT 1 FROM payments p
              WHERE p.order_id = o.id AND p.status IN ('SUCCEEDED', 'PARTIALLY_REFUNDED', 'REFUNDED')
          )
        ORDER BY o.id
    """,
    "failed card orders gave the money back": """
        SELECT o.id, o.status, o.failure_code, p.status
        FROM orders o JOIN payments p ON p.order_id = o.id
        WHERE o.channel = 'B2C' AND o.status = 'FAILED' AND o.failure_code IS DISTINCT FROM 'REFUND_FAILED'
          AND p.status IN ('SUCCEEDED', 'PARTIALLY_REFUNDED')
        ORDER BY o.id
    """,
    "refunds add up": """
        WITH refunded AS (
            SELECT order_id, count(*) AS refunds,
                   coalesce(sum(amount_minor) FILTER (WHERE status IN ('PENDING', 'SUCCEEDED')), 0) AS held
            FROM refunds GROUP BY order_id
        )
        SELECT o.id, o.status, o.refunded_minor, coalesce(r.held, p.refunded_minor, 0)
        FROM orders o
        LEFT JOIN refunded r ON r.order_id = o.id
        LEFT JOIN payments p ON p.order_id = o.id
        WHERE o.refunded_minor <> coalesce(r.held, p.refunded_minor, 0)
           OR (o.status = 'REFUNDED' AND o.refunded_minor <> o.total_minor)
           OR (o.status = 'PARTIALLY_REFUNDED' AND o.refunded_minor NOT BETWEEN 1 AND o.total_minor - 1)
        ORDER BY o.id
    """,
}


async def check_order_invariants(session: AsyncSession) -> list[str]:
    """One line per order that breaks a rule; empty when every order keeps its promises."""
    violations: list[str] = []
    for rule, sql in _RULES.items():
        for order_id, status, expected, found in await session.execute(text(sql)):
            violations.append(f"order {order_id} ({status}): {rule} broken ({expected} vs {found})")
    return violations
