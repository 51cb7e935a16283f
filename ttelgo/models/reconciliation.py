"""Reconciliation runs and what each found: supplier orders nobody claimed, payments and refunds made
outside our records, orders whose workflow is gone. A finding is written once per run and subject."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from ttelgo.models.base import Base, CreatedAt, Timestamps, text_enum, uuid_pk


class ReconciliationStatus(StrEnum):
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"  # every check ran
    FAILED = "FAILED"  # a check gave up after its retries; the others still ran (see `errors`)


class FindingKind(StrEnum):
    SUPPLIER_ORDER_ADOPTED = "SUPPLIER_ORDER_ADOPTED"  # claimed for an order of ours that lacked it
    SUPPLIER_ORDER_REVOKED = "SUPPLIER_ORDER_REVOKED"  # unclaimed: bundles revoked, refunded to balance
    SUPPLIER_BUNDLE_USED = "SUPPLIER_BUNDLE_USED"  # unclaimed but used: cannot be refunded, reported
    # a succeeded PaymentIntent our records do not show (order unpaid, payment not succeeded, or the
    # order FAILED keeping the money), its order's workflow ended
    PAYMENT_NOT_RECORDED = "PAYMENT_NOT_RECORDED"
    EXTERNAL_REFUND_RECORDED = "EXTERNAL_REFUND_RECORDED"  # a refund made outside TTelGo, now recorded
    EXTERNAL_REFUND_UNRECORDABLE = "EXTERNAL_REFUND_UNRECORDABLE"  # one that does not fit our records
    DISPUTE = "DISPUTE"  # a chargeback on one of our payments
    ORDER_STUCK = "ORDER_STUCK"  # not terminal (or NEEDS_ATTENTION), and its workflow is closed or missing
    # a refunded top-up whose bundle stays on the eSIM: eSIM Go would have revoked another order's
    TOPUP_BUNDLE_NOT_REVOKED = "TOPUP_BUNDLE_NOT_REVOKED"
    # an order gave up while a call bought its line, and eSIM Go did not take the line back: revoke it
    BOUGHT_LINE_NOT_RETURNED = "BOUGHT_LINE_NOT_RETURNED"


class FindingAction(StrEnum):
    ADOPTED = "ADOPTED"
    REVOKED = "REVOKED"
    RECORDED = "RECORDED"
    REPORTED = "REPORTED"


class ReconciliationRun(Timestamps, Base):
    __tablename__ = "reconciliation_runs"
    __table_args__ = (Index("ix_reconciliation_runs_created_at", "created_at"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    workflow_id: Mapped[str] = mapped_column(String(200), unique=True)
    requested_by: Mapped[str] = mapped_column(String(100))  # "system:schedule" or "admin:<id>"
    status: Mapped[ReconciliationStatus] = mapped_column(
        text_enum(ReconciliationStatus), default=ReconciliationStatus.RUNNING
    )
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    window_end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Counts by finding kind, and what could not be checked (e.g. disputes on a Stripe stand-in).
    summary: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default=text("'{}'::jsonb"))
    notes: Mapped[list[str]] = mapped_column(JSONB, default=list, server_default=text("'[]'::jsonb"))
    errors: Mapped[list[str]] = mapped_column(JSONB, default=list, server_default=text("'[]'::jsonb"))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ReconciliationFinding(CreatedAt, Base):
    __tablename__ = "reconciliation_findings"
    __table_args__ = (
        # A retried check writes nothing twice.
        UniqueConstraint("run_id", "kind", "subject"),
        Index("ix_reconciliation_findings_order_id", "order_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("reconciliation_runs.id", ondelete="CASCADE"))
    kind: Mapped[FindingKind] = mapped_column(text_enum(FindingKind))
    action: Mapped[FindingAction] = mapped_column(text_enum(FindingAction))
    subject: Mapped[str] = mapped_column(String(255))  # supplier reference, Stripe id or order id
    order_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("orders.id", ondelete="SET NULL"))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default=text("'{}'::jsonb"))
