"""Supplier cost and payable (issue 14): the SUPPLIER_PAYABLE platform account kind.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-29 12:00:00

"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BEFORE = ("VENDOR_WALLET", "CARD_CLEARING", "REVENUE", "SUPPLIER_COST", "ADJUSTMENTS")


def _kind_check(kinds: Sequence[str]) -> None:
    op.drop_constraint(op.f("ck_accounts_accountkind"), "accounts", type_="check")
    listed = ", ".join(f"'{k}'" for k in kinds)
    op.create_check_constraint(op.f("ck_accounts_accountkind"), "accounts", f"kind IN ({listed})")


def upgrade() -> None:
    _kind_check((*_BEFORE, "SUPPLIER_PAYABLE"))


def downgrade() -> None:
    # The supplier cost bookings go with the payable they were made against; the cost account's cached
    # totals lose exactly those transfers, so the ledger still balances and matches its transfers.
    op.execute(
        """
        UPDATE accounts a SET
            debits_posted_minor = a.debits_posted_minor - coalesce((
                SELECT sum(t.amount_minor) FROM transfers t JOIN accounts p ON p.id = t.credit_account_id
                WHERE t.debit_account_id = a.id AND p.kind = 'SUPPLIER_PAYABLE'), 0),
            credits_posted_minor = a.credits_posted_minor - coalesce((
                SELECT sum(t.amount_minor) FROM transfers t JOIN accounts p ON p.id = t.debit_account_id
                WHERE t.credit_account_id = a.id AND p.kind = 'SUPPLIER_PAYABLE'), 0)
        WHERE a.kind <> 'SUPPLIER_PAYABLE'
        """
    )
    op.execute(
        """
        DELETE FROM transfers WHERE debit_account_id IN (SELECT id FROM accounts WHERE kind = 'SUPPLIER_PAYABLE')
            OR credit_account_id IN (SELECT id FROM accounts WHERE kind = 'SUPPLIER_PAYABLE')
        """
    )
    op.execute("DELETE FROM accounts WHERE kind = 'SUPPLIER_PAYABLE'")
    _kind_check(_BEFORE)
