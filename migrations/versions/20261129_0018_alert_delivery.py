"""Usage alerts say when their send was handed to the outbox (`esim_bundle_alerts.sent_at`), so
housekeeping can send again one whose claiming run died first; and a reconciliation finding for a refunded
top-up whose bundle eSIM Go could not revoke without taking another order's.

Alerts that exist already count as sent (at their creation): they were sent by the run that claimed them,
or, for the ones migration 0014 recorded for thresholds crossed before alerts existed, never meant to be.

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-29 16:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | Sequence[str] | None = "0017"
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
_NEW_KIND = "TOPUP_BUNDLE_NOT_REVOKED"
_KIND_CHECK = "ck_reconciliation_findings_findingkind"  # named by 0006 (the enum check)


def _kind_check(kinds: Sequence[str]) -> None:
    op.drop_constraint(op.f(_KIND_CHECK), "reconciliation_findings", type_="check")
    listed = ", ".join(f"'{k}'" for k in kinds)
    op.create_check_constraint(op.f(_KIND_CHECK), "reconciliation_findings", f"kind IN ({listed})")


def upgrade() -> None:
    op.add_column("esim_bundle_alerts", sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE esim_bundle_alerts SET sent_at = created_at")
    op.create_index(
        "ix_esim_bundle_alerts_unsent",
        "esim_bundle_alerts",
        ["created_at"],
        unique=False,
        postgresql_where=sa.text("sent_at IS NULL"),
    )
    _kind_check((*_KINDS, _NEW_KIND))


def downgrade() -> None:
    op.execute(f"DELETE FROM reconciliation_findings WHERE kind = '{_NEW_KIND}'")
    _kind_check(_KINDS)
    op.drop_index(
        "ix_esim_bundle_alerts_unsent",
        table_name="esim_bundle_alerts",
        postgresql_where=sa.text("sent_at IS NULL"),
    )
    op.drop_column("esim_bundle_alerts", "sent_at")
