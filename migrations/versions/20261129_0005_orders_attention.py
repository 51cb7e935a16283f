"""Orders: NEEDS_ATTENTION (stopped for an operator) and the in-doubt supplier call marker.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 08:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BEFORE = (
    "CREATED",
    "PAYMENT_PENDING",
    "PAYMENT_FAILED",
    "PAID",
    "PROVISIONING",
    "COMPLETED",
    "FAILED",
    "EXPIRED",
    "CANCELED",
    "REFUNDED",
    "PARTIALLY_REFUNDED",
)


def _status_check(states: Sequence[str]) -> None:
    op.drop_constraint(op.f("ck_orders_orderstatus"), "orders", type_="check")
    listed = ", ".join(f"'{s}'" for s in states)
    op.create_check_constraint(op.f("ck_orders_orderstatus"), "orders", f"status IN ({listed})")


def upgrade() -> None:
    _status_check((*_BEFORE, "NEEDS_ATTENTION"))
    op.add_column("orders", sa.Column("supplier_call_sent_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("orders", "supplier_call_sent_at")
    op.execute("UPDATE orders SET status = 'PROVISIONING' WHERE status = 'NEEDS_ATTENTION'")
    _status_check(_BEFORE)
