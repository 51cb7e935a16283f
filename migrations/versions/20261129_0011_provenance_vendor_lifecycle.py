"""Request provenance and vendor lifecycle (issue 14): the caller's IP and user agent on orders, refunds
and audit rows; sessions ended by a deactivation say so. Deactivation reuses the `deleted_at` columns.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29 12:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SESSION_ENDS = ("LOGOUT", "LOGOUT_EVERYWHERE", "TOKEN_REUSE", "PASSWORD_RESET")


def _session_end_check(reasons: Sequence[str]) -> None:
    op.drop_constraint(op.f("ck_auth_sessions_sessionend"), "auth_sessions", type_="check")
    listed = ", ".join(f"'{r}'" for r in reasons)
    op.create_check_constraint(
        op.f("ck_auth_sessions_sessionend"), "auth_sessions", f"revoked_reason IN ({listed})"
    )


def upgrade() -> None:
    _session_end_check((*_SESSION_ENDS, "DEACTIVATED"))
    for table in ("orders", "refunds"):
        op.add_column(table, sa.Column("client_ip", sa.String(length=64), nullable=True))
        op.add_column(table, sa.Column("user_agent", sa.String(length=512), nullable=True))
    op.add_column("audit_logs", sa.Column("user_agent", sa.String(length=512), nullable=True))


def downgrade() -> None:
    op.drop_column("audit_logs", "user_agent")
    for table in ("refunds", "orders"):
        op.drop_column(table, "user_agent")
        op.drop_column(table, "client_ip")
    op.execute(
        "UPDATE auth_sessions SET revoked_reason = 'LOGOUT_EVERYWHERE' WHERE revoked_reason = 'DEACTIVATED'"
    )
    _session_end_check(_SESSION_ENDS)
