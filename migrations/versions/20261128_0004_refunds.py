"""Refunds: one row per refund of an order, pending ones counted against what is left to refund.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 11:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "refunds",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                *("PENDING", "SUCCEEDED", "FAILED", "REVERSED"),
                name="refundstatus",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reason", sa.String(length=1000), nullable=False),
        sa.Column("requested_by", sa.String(length=100), nullable=False),
        sa.Column("used_esim_override", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("workflow_id", sa.String(length=200), nullable=False),
        sa.Column("provider_refund_id", sa.String(length=255), nullable=True),
        sa.Column("failure_reason", sa.String(length=1000), nullable=True),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("amount_minor > 0", name=op.f("ck_refunds_amount_positive")),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name=op.f("ck_refunds_currency_iso4217")),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_refunds_order_id_orders"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refunds")),
        sa.UniqueConstraint("workflow_id", name=op.f("uq_refunds_workflow_id")),
    )
    op.create_index("ix_refunds_order_id_created_at", "refunds", ["order_id", "created_at"], unique=False)
    op.create_index(
        "uq_refunds_provider_refund_id",
        "refunds",
        ["provider_refund_id"],
        unique=True,
        postgresql_where=sa.text("provider_refund_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "uq_refunds_provider_refund_id",
        table_name="refunds",
        postgresql_where=sa.text("provider_refund_id IS NOT NULL"),
    )
    op.drop_index("ix_refunds_order_id_created_at", table_name="refunds")
    op.drop_table("refunds")
