"""Vendor webhooks: subscriptions and secret rotation on vendors; attempt details on deliveries.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 13:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "vendors", sa.Column("webhook_events", postgresql.JSONB(astext_type=sa.Text()), nullable=True)
    )
    op.add_column("vendors", sa.Column("webhook_previous_secret", sa.String(length=128), nullable=True))
    op.add_column(
        "vendors", sa.Column("webhook_previous_secret_expires_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "webhook_deliveries", sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "webhook_deliveries",
        sa.Column("redeliveries", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    op.create_index(
        "ix_webhook_deliveries_vendor_id_created_at",
        "webhook_deliveries",
        ["vendor_id", "created_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_vendor_id_created_at", table_name="webhook_deliveries")
    op.drop_column("webhook_deliveries", "redeliveries")
    op.drop_column("webhook_deliveries", "last_attempt_at")
    op.drop_column("vendors", "webhook_previous_secret_expires_at")
    op.drop_column("vendors", "webhook_previous_secret")
    op.drop_column("vendors", "webhook_events")
