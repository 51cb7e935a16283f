"""eSIM read models (issue 13): every bundle on an eSIM, usage alerts once each, the supplier read time.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-29 14:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("esims", sa.Column("profile_status", sa.String(length=32), nullable=True))
    op.add_column("esims", sa.Column("refreshed_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "esim_bundles",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("esim_id", sa.Uuid(), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=True),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("reference", sa.String(length=255), nullable=True),
        sa.Column("state", sa.String(length=32), nullable=True),
        sa.Column("data_total_bytes", sa.BigInteger(), nullable=True),
        sa.Column("data_remaining_bytes", sa.BigInteger(), nullable=True),
        sa.Column("unlimited", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "data_remaining_bytes IS NULL OR data_remaining_bytes >= 0",
            name=op.f("ck_esim_bundles_remaining_non_negative"),
        ),
        sa.ForeignKeyConstraint(
            ["esim_id"], ["esims.id"], name=op.f("fk_esim_bundles_esim_id_esims"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_esim_bundles_order_id_orders"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_esim_bundles")),
    )
    op.create_index(op.f("ix_esim_bundles_esim_id"), "esim_bundles", ["esim_id"])
    op.create_index(
        "uq_esim_bundles_esim_id_reference",
        "esim_bundles",
        ["esim_id", "reference"],
        unique=True,
        postgresql_where=sa.text("reference IS NOT NULL"),
    )
    op.create_index(
        "uq_esim_bundles_esim_id_order_id",
        "esim_bundles",
        ["esim_id", "order_id"],
        unique=True,
        postgresql_where=sa.text("order_id IS NOT NULL"),
    )
    op.create_table(
        "esim_bundle_alerts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("bundle_id", sa.Uuid(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "USAGE_80",
                "USAGE_100",
                "EXPIRING",
                name="esimalertkind",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("emitted_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["bundle_id"],
            ["esim_bundles.id"],
            name=op.f("fk_esim_bundle_alerts_bundle_id_esim_bundles"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_esim_bundle_alerts")),
        sa.UniqueConstraint("bundle_id", "kind", name=op.f("uq_esim_bundle_alerts_bundle_id_kind")),
    )
    # The bundle each existing eSIM was sold with, as its single-bundle columns describe it.
    op.execute(
        """
        INSERT INTO esim_bundles (id, esim_id, order_id, name, state, data_total_bytes, data_remaining_bytes,
                                  unlimited, started_at, expires_at)
        SELECT gen_random_uuid(), id, order_id, bundle_name, bundle_state, data_total_bytes,
               data_remaining_bytes, unlimited, first_used_at, expires_at
        FROM esims
        """
    )
    # Thresholds those bundles crossed before this release were announced then, or never will be: either
    # way not weeks late, by the first report after deploy. Finished bundles announce nothing (crossed()).
    op.execute(
        """
        INSERT INTO esim_bundle_alerts (id, bundle_id, kind, emitted_by)
        SELECT gen_random_uuid(), b.id, k.kind, 'migration:0014'
        FROM esim_bundles b
        JOIN (VALUES ('USAGE_80', 80), ('USAGE_100', 100)) AS k(kind, percent) ON true
        WHERE NOT b.unlimited AND b.data_total_bytes > 0 AND b.data_remaining_bytes IS NOT NULL
          AND CASE k.percent
                WHEN 80 THEN (b.data_total_bytes - b.data_remaining_bytes) * 100 >= 80 * b.data_total_bytes
                ELSE b.data_remaining_bytes <= 0
              END
        """
    )


def downgrade() -> None:
    op.drop_table("esim_bundle_alerts")
    op.drop_index("uq_esim_bundles_esim_id_order_id", table_name="esim_bundles")
    op.drop_index("uq_esim_bundles_esim_id_reference", table_name="esim_bundles")
    op.drop_index(op.f("ix_esim_bundles_esim_id"), table_name="esim_bundles")
    op.drop_table("esim_bundles")
    op.drop_column("esims", "refreshed_at")
    op.drop_column("esims", "profile_status")
