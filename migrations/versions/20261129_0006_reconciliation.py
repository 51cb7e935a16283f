"""Reconciliation runs and their findings.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 12:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KINDS = (
    "SUPPLIER_ORDER_ADOPTED",
    "SUPPLIER_ORDER_REVOKED",
    "SUPPLIER_BUNDLE_USED",
    "PAYMENT_NOT_RECORDED",
    "EXTERNAL_REFUND_RECORDED",
    "EXTERNAL_REFUND_UNRECORDABLE",
    "DISPUTE",
    "ORDER_STUCK",
)


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=32)


def upgrade() -> None:
    op.create_table(
        "reconciliation_runs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workflow_id", sa.String(length=200), nullable=False),
        sa.Column("requested_by", sa.String(length=100), nullable=False),
        sa.Column("status", _enum("reconciliationstatus", "RUNNING", "COMPLETED", "FAILED"), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "summary",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "notes",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "errors",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_runs")),
        sa.UniqueConstraint("workflow_id", name=op.f("uq_reconciliation_runs_workflow_id")),
    )
    op.create_index("ix_reconciliation_runs_created_at", "reconciliation_runs", ["created_at"], unique=False)
    op.create_table(
        "reconciliation_findings",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("kind", _enum("findingkind", *_KINDS), nullable=False),
        sa.Column(
            "action", _enum("findingaction", "ADOPTED", "REVOKED", "RECORDED", "REPORTED"), nullable=False
        ),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=True),
        sa.Column(
            "detail",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["orders.id"],
            name=op.f("fk_reconciliation_findings_order_id_orders"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["reconciliation_runs.id"],
            name=op.f("fk_reconciliation_findings_run_id_reconciliation_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_findings")),
        sa.UniqueConstraint(
            "run_id", "kind", "subject", name=op.f("uq_reconciliation_findings_run_id_kind_subject")
        ),
    )
    op.create_index(
        "ix_reconciliation_findings_order_id", "reconciliation_findings", ["order_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_reconciliation_findings_order_id", table_name="reconciliation_findings")
    op.drop_table("reconciliation_findings")
    op.drop_index("ix_reconciliation_runs_created_at", table_name="reconciliation_runs")
    op.drop_table("reconciliation_runs")
