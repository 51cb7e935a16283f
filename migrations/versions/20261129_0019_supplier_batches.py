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
_IN_DOUBT = sa.text("supplier_call_sent_at IS NOT NULL")
_KINDS = (
    "SUPPLIER_ORDER_ADOPTED",
    "SUPPLIER_ORDER_REVOKED",
    "SUPPLIER_BUNDLE_USED",
    "PAYMENT_NOT_RECORDED",
    "EXTERNAL_REFUND_RECORDED",
    "EXTERNAL_REFUND_UNRECORDABLE",
    "DISPUTE",
    "ORDER_STUCK",
    "TOPUP_BUNDLE_NOT_REVOKED",
)
_NEW_KIND = "BOUGHT_LINE_NOT_RETURNED"
_KIND_CHECK = "ck_reconciliation_findings_findingkind"  # named by 0006 (the enum check)


def _kind_check(kinds: Sequence[str]) -> None:
    op.drop_constraint(op.f(_KIND_CHECK), "reconciliation_findings", type_="check")
    listed = ", ".join(f"'{k}'" for k in kinds)
    op.create_check_constraint(op.f(_KIND_CHECK), "reconciliation_findings", f"kind IN ({listed})")


def upgrade() -> None:
    op.add_column("orders", sa.Column("supplier_batch_id", sa.Uuid(), nullable=True))
    op.add_column(
        "orders",
        sa.Column("supplier_order_line", sa.SmallInteger(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column("orders", sa.Column("supplier_closed_at", sa.DateTime(timezone=True), nullable=True))
    # A call in doubt is read by its id (its composition), by the batch activity and reconciliation.
    op.create_index(
        "ix_orders_supplier_call_in_doubt", "orders", ["supplier_batch_id"], postgresql_where=_IN_DOUBT
    )
    _kind_check((*_KINDS, _NEW_KIND))
    op.drop_index("uq_orders_supplier_order_reference", table_name="orders", postgresql_where=_WHERE)
    op.create_index(
        "uq_orders_supplier_order_reference_line",
        "orders",
        ["supplier_order_reference", "supplier_order_line"],
        unique=True,
        postgresql_where=_WHERE,
    )


def downgrade() -> None:
    op.execute(f"DELETE FROM reconciliation_findings WHERE kind = '{_NEW_KIND}'")
    _kind_check(_KINDS)
    op.drop_index("ix_orders_supplier_call_in_doubt", table_name="orders", postgresql_where=_IN_DOUBT)
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
