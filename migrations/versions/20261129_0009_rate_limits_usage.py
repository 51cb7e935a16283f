"""Rate limits and API usage (issue 15): a per-vendor request limit, the shared rate-limit counters
(UNLOGGED: counters may be lost in a crash, and skip the WAL on every request), and an index for the
usage retention.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 10:30:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("vendors", sa.Column("rate_limit_per_minute", sa.Integer(), nullable=True))
    op.create_check_constraint(
        op.f("ck_vendors_rate_limit_positive"),
        "vendors",
        "rate_limit_per_minute IS NULL OR rate_limit_per_minute > 0",
    )
    op.create_table(
        "rate_limit_counters",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("hits", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_rate_limit_counters")),
        prefixes=["UNLOGGED"],
    )
    op.create_index(
        op.f("ix_rate_limit_counters_expires_at"), "rate_limit_counters", ["expires_at"], unique=False
    )
    op.create_index(op.f("ix_api_usage_logs_created_at"), "api_usage_logs", ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_api_usage_logs_created_at"), table_name="api_usage_logs")
    op.drop_index(op.f("ix_rate_limit_counters_expires_at"), table_name="rate_limit_counters")
    op.drop_table("rate_limit_counters")
    op.drop_constraint(op.f("ck_vendors_rate_limit_positive"), "vendors", type_="check")
    op.drop_column("vendors", "rate_limit_per_minute")
