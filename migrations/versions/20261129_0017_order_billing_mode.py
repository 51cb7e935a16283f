"""An order's billing mode (issue 14): the vendor's mode when the order was placed, so an invoice bills
each order as it was bought (on credit or from the balance) whatever the vendor's mode today. NULL for card
orders (B2C), and for a vendor order whose workflow started before this column existed (its invoice falls
back to the vendor's mode then).

Existing vendor orders are backfilled from the trail of `vendor.billing` audit rows, written in the
transaction of every mode change: the `after` of the last change before the order, else the `before` of the
first change after it, else the vendor's mode (never changed).

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-29 15:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | Sequence[str] | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BACKFILL = """
UPDATE orders o SET billing_mode = coalesce(
    (SELECT a.after ->> 'billing_mode' FROM audit_logs a
     WHERE a.action = 'vendor.billing' AND a.target_type = 'vendor' AND a.target_id = o.vendor_id::text
       AND a.created_at <= o.created_at
     ORDER BY a.created_at DESC, a.id DESC LIMIT 1),
    (SELECT a.before ->> 'billing_mode' FROM audit_logs a
     WHERE a.action = 'vendor.billing' AND a.target_type = 'vendor' AND a.target_id = o.vendor_id::text
       AND a.created_at > o.created_at
     ORDER BY a.created_at, a.id LIMIT 1),
    (SELECT v.billing_mode FROM vendors v WHERE v.id = o.vendor_id))
WHERE o.channel = 'B2B'
"""


def upgrade() -> None:
    op.add_column(
        "orders",
        sa.Column(
            "billing_mode",
            sa.Enum(
                "PREPAID",
                "POSTPAID",
                name="billingmode",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=True,
        ),
    )
    op.create_check_constraint(
        op.f("ck_orders_billing_mode_b2b_only"), "orders", "billing_mode IS NULL OR channel = 'B2B'"
    )
    op.execute(_BACKFILL)


def downgrade() -> None:
    op.drop_constraint(op.f("ck_orders_billing_mode_b2b_only"), "orders", type_="check")
    op.drop_column("orders", "billing_mode")
