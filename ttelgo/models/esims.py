"""What is on an eSIM after the sale: every bundle assigned to it, and the usage alerts sent about each."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from ttelgo.models.base import Base, CreatedAt, Timestamps, text_enum, uuid_pk


class EsimAlertKind(StrEnum):
    USAGE_80 = "USAGE_80"
    USAGE_100 = "USAGE_100"
    EXPIRING = "EXPIRING"  # the day before the bundle expires


class EsimBundle(Timestamps, Base):
    """One bundle assignment on an eSIM: the one sold with it and every top-up. eSIM Go names an assignment
    by its reference; a row we create before the supplier has told us that reference (the bundle an order
    bought) carries the order and is claimed by the first assignment of that bundle name reported."""

    __tablename__ = "esim_bundles"
    __table_args__ = (
        CheckConstraint(
            "data_remaining_bytes IS NULL OR data_remaining_bytes >= 0", name="remaining_non_negative"
        ),
        Index(
            "uq_esim_bundles_esim_id_reference",
            "esim_id",
            "reference",
            unique=True,
            postgresql_where=text("reference IS NOT NULL"),
        ),
        # One bundle per eSIM per order: a top-up order puts exactly one bundle on its eSIM.
        Index(
            "uq_esim_bundles_esim_id_order_id",
            "esim_id",
            "order_id",
            unique=True,
            postgresql_where=text("order_id IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    esim_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("esims.id", ondelete="RESTRICT"), index=True)
    order_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("orders.id", ondelete="RESTRICT"))
    name: Mapped[str] = mapped_column(String(100))
    reference: Mapped[str | None] = mapped_column(String(255))
    state: Mapped[str | None] = mapped_column(String(32))
    data_total_bytes: Mapped[int | None] = mapped_column(BigInteger)
    data_remaining_bytes: Mapped[int | None] = mapped_column(BigInteger)
    unlimited: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    assigned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class EsimBundleAlert(CreatedAt, Base):
    """A usage alert, at most one per bundle and kind; written in the transaction that saw the crossing.
    `emitted_by` is the workflow that claimed it and sends its e-mail or webhook; `sent_at` says that send
    was handed to the outbox. Housekeeping sends again an alert whose claiming run died before that (the
    outbox's dedupe key and the webhook's event id, both from the alert id, make a repeat a no-op)."""

    __tablename__ = "esim_bundle_alerts"
    __table_args__ = (
        UniqueConstraint("bundle_id", "kind"),
        Index("ix_esim_bundle_alerts_unsent", "created_at", postgresql_where=text("sent_at IS NULL")),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    bundle_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("esim_bundles.id", ondelete="CASCADE"))
    kind: Mapped[EsimAlertKind] = mapped_column(text_enum(EsimAlertKind))
    emitted_by: Mapped[str] = mapped_column(String(200))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
