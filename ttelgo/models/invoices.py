"""POSTPAID invoices: one per vendor and month, numbered without gaps, with their lines and renderings."""

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
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from ttelgo.models.base import Base, Timestamps, currency_check, text_enum, uuid_pk
from ttelgo.months import MONTH_PATTERN


class InvoiceStatus(StrEnum):
    ISSUED = "ISSUED"
    PAID = "PAID"
    VOID = "VOID"


class InvoiceCounter(Base):
    """The last invoice number given in a year. Its row is locked by the transaction that inserts an
    invoice and rolls back with it, so numbers have no gaps (a sequence would leave some)."""

    __tablename__ = "invoice_counters"

    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_number: Mapped[int] = mapped_column(Integer)


class Invoice(Timestamps, Base):
    __tablename__ = "invoices"
    __table_args__ = (
        # Exactly one invoice per vendor and month, however often the run is retried or repeated.
        UniqueConstraint("vendor_id", "period"),
        CheckConstraint(f"period ~ '{MONTH_PATTERN}'", name="period_is_month"),
        CheckConstraint("total_minor = debits_minor - refunds_minor", name="total_is_net"),
        CheckConstraint("(status = 'PAID') = (paid_at IS NOT NULL)", name="paid_has_paid_at"),
        Index("ix_invoices_status_due_at", "status", "due_at"),
        currency_check(),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    number: Mapped[str] = mapped_column(String(32), unique=True)  # INV-YYYY-NNNNNN
    vendor_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("vendors.id", ondelete="RESTRICT"))
    period: Mapped[str] = mapped_column(String(7))  # YYYY-MM, UTC
    currency: Mapped[str] = mapped_column(String(3))
    debits_minor: Mapped[int] = mapped_column(BigInteger)  # posted order debits in the period
    refunds_minor: Mapped[int] = mapped_column(BigInteger)  # refunds credited in the period
    total_minor: Mapped[int] = mapped_column(BigInteger)
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[InvoiceStatus] = mapped_column(text_enum(InvoiceStatus), default=InvoiceStatus.ISSUED)
    paid_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    html: Mapped[str] = mapped_column(Text)
    csv: Mapped[str] = mapped_column(Text)


class InvoiceLine(Base):
    """One bundle's share of an invoice: eSIMs debited and the net amount (debits minus refunds)."""

    __tablename__ = "invoice_lines"
    __table_args__ = (UniqueConstraint("invoice_id", "bundle_code"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    invoice_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("invoices.id", ondelete="CASCADE"))
    bundle_code: Mapped[str] = mapped_column(String(100))
    quantity: Mapped[int] = mapped_column(Integer)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
