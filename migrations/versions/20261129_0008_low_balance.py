"""Low-balance alerts: a per-vendor threshold (NULL: no alert).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 15:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("vendors", sa.Column("low_balance_threshold_minor", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("vendors", "low_balance_threshold_minor")
