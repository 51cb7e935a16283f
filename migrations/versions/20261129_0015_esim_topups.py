"""Top-ups of existing eSIMs (issue 13): an order's kind, and a top-up's target ICCID.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-29 14:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "orders",
        sa.Column(
            "kind",
            sa.Enum("ORDER", "TOPUP", name="orderkind", native_enum=False, create_constraint=True, length=32),
            server_default=sa.text("'ORDER'"),
            nullable=False,
        ),
    )
    op.add_column("orders", sa.Column("target_iccid", sa.String(length=22), nullable=True))
    op.create_check_constraint(
        op.f("ck_orders_topup_has_one_target"),
        "orders",
        "(kind = 'TOPUP' AND target_iccid IS NOT NULL AND quantity = 1) OR "
        "(kind = 'ORDER' AND target_iccid IS NULL)",
    )
    op.create_index(
        op.f("ix_orders_target_iccid_created_at"),
        "orders",
        ["target_iccid", "created_at"],
        postgresql_where=sa.text("target_iccid IS NOT NULL"),
    )


def downgrade() -> None:
    # Top-ups were orders for one more bundle: nothing else refers to their kind or target.
    op.drop_index(op.f("ix_orders_target_iccid_created_at"), table_name="orders")
    op.drop_constraint(op.f("ck_orders_topup_has_one_target"), "orders", type_="check")
    op.drop_column("orders", "target_iccid")
    op.drop_column("orders", "kind")
