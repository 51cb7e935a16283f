"""Orders waiting for eSIM Go are bought together, one multi-line supplier order with a line per order:
each order records the call its line was sent in (`supplier_batch_id`) and its line in the supplier order
(`supplier_order_line`), and a supplier order's reference is unique per line rather than per order. An
order that gives up on the supplier closes its row to purchases first (`supplier_closed_at`).

Orders recorded before were bought alone: line 0, no call id (a call in doubt then is that row alone).

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-29 17:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | Sequence[str] | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WHERE = sa.text("supplier_order_reference IS NOT NULL")


def upgrade() -> None:
    op.add_column("orders", sa.Column("supplier_batch_id", sa.Uuid(), nullable=True))
    op.add_column(
        "orders",
        sa.Column("supplier_order_line", sa.SmallInteger(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column("orders", sa.Column("supplier_closed_at", sa.DateTime(timezone=True), nullable=True))
    op.drop_index("uq_orders_supplier_order_reference", table_name="orders", postgresql_where=_WHERE)
    op.create_index(
        "uq_orders_supplier_order_reference_line",
        "orders",
        ["supplier_order_reference", "supplier_order_line"],
        unique=True,
        postgresql_where=_WHERE,
    )


def downgrade() -> None:
    # Fails, as it should, once two orders share a supplier order: the old schema cannot hold them.
    op.drop_index("uq_orders_supplier_order_reference_line", table_name="orders", postgresql_where=_WHERE)
    op.create_index(
        "uq_orders_supplier_order_reference",
        "orders",
        ["supplier_order_reference"],
        unique=True,
        postgresql_where=_WHERE,
    )
    op.drop_column("orders", "supplier_closed_at")
    op.drop_column("orders", "supplier_order_line")
    op.drop_column("orders", "supplier_batch_id")
