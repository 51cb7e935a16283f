"""What is sold: orders, the card payments behind them, the eSIMs delivered, and customer notifications."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from ttelgo.models.base import Base, SoftDelete, Timestamps, currency_check, text_enum, uuid_pk
from ttelgo.models.identity import BillingMode


class Channel(StrEnum):
    B2C = "B2C"
    B2B = "B2B"


class OrderStatus(StrEnum):
    CREATED = "CREATED"
    PAYMENT_PENDING = "PAYMENT_PENDING"
    PAYMENT_FAILED = "PAYMENT_FAILED"
    PAID = "PAID"
    PROVISIONING = "PROVISIONING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"
    CANCELED = "CANCELED"
    REFUNDED = "REFUNDED"
    PARTIALLY_REFUNDED = "PARTIALLY_REFUNDED"
    # Stopped for an operator: the supplier's data cannot be trusted (a reissued ICCID, a reference it no
    # longer knows). Money stays held; an operator retries the provisioning or gives the order up.
    NEEDS_ATTENTION = "NEEDS_ATTENTION"


# Nothing will move an order in these any more (refunds aside, which have their own workflows).
TERMINAL_ORDER_STATES = frozenset(
    {
        OrderStatus.COMPLETED,
        OrderStatus.FAILED,
        OrderStatus.EXPIRED,
        OrderStatus.CANCELED,
        OrderStatus.REFUNDED,
        OrderStatus.PARTIALLY_REFUNDED,
    }
)


class OrderKind(StrEnum):
    ORDER = "ORDER"  # new eSIMs
    TOPUP = "TOPUP"  # one more bundle on an eSIM the buyer already has (`target_iccid`)


class PaymentPurpose(StrEnum):
    ORDER = "ORDER"
    TOPUP = "TOPUP"


class PaymentStatus(StrEnum):
    REQUIRES_PAYMENT = "REQUIRES_PAYMENT"
    PROCESSING = "PROCESSING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"
    REFUNDED = "REFUNDED"
    PARTIALLY_REFUNDED = "PARTIALLY_REFUNDED"


class RefundStatus(StrEnum):
    PENDING = "PENDING"  # reserved against the order; money on its way back
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"  # nothing went back; the reservation is released
    REVERSED = "REVERSED"  # succeeded, then failed at the bank: undone in our records


class EsimStatus(StrEnum):
    RELEASED = "RELEASED"
    DOWNLOADED = "DOWNLOADED"
    INSTALLED = "INSTALLED"
    REVOKED = "REVOKED"


class NotificationChannel(StrEnum):
    EMAIL = "EMAIL"
    WEBHOOK = "WEBHOOK"


class NotificationStatus(StrEnum):
    QUEUED = "QUEUED"
    SENT = "SENT"
    FAILED = "FAILED"


class Order(Timestamps, SoftDelete, Base):
    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint(
            "(channel = 'B2C' AND user_id IS NOT NULL AND vendor_id IS NULL) OR "
            "(channel = 'B2B' AND vendor_id IS NOT NULL AND user_id IS NULL)",
            name="buyer_matches_channel",
        ),
        CheckConstraint("quantity BETWEEN 1 AND 10", name="quantity_range"),
        # A top-up puts one bundle on one existing eSIM; an order names none.
        CheckConstraint(
            "(kind = 'TOPUP' AND target_iccid IS NOT NULL AND quantity = 1) OR "
            "(kind = 'ORDER' AND target_iccid IS NULL)",
            name="topup_has_one_target",
        ),
        CheckConstraint(
            "unit_price_minor >= 0 AND total_minor = unit_price_minor * quantity", name="total_exact"
        ),
        CheckConstraint("refunded_minor >= 0 AND refunded_minor <= total_minor", name="refund_within_total"),
        CheckConstraint("billing_mode IS NULL OR channel = 'B2B'", name="billing_mode_b2b_only"),
        currency_check(),
        Index("ix_orders_user_id_created_at", "user_id", "created_at"),
        Index("ix_orders_vendor_id_created_at", "vendor_id", "created_at"),
        Index("ix_orders_status_created_at", "status", "created_at"),
        Index("ix_orders_created_at", "created_at"),
        Index(
            "ix_orders_target_iccid_created_at",
            "target_iccid",
            "created_at",
            postgresql_where=text("target_iccid IS NOT NULL"),
        ),
        # A supplier order's line belongs to one of our orders: reconciliation after a crash relies on this.
        Index(
            "uq_orders_supplier_order_reference_line",
            "supplier_order_reference",
            "supplier_order_line",
            unique=True,
            postgresql_where=text("supplier_order_reference IS NOT NULL"),
        ),
        # A call in doubt is read by its id (its composition).
        Index(
            "ix_orders_supplier_call_in_doubt",
            "supplier_batch_id",
            postgresql_where=text("supplier_call_sent_at IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    channel: Mapped[Channel] = mapped_column(text_enum(Channel))
    kind: Mapped[OrderKind] = mapped_column(
        text_enum(OrderKind), default=OrderKind.ORDER, server_default=text("'ORDER'")
    )
    # A top-up's eSIM: delivered on it, no eSIM row of its own (the ICCID belongs to an earlier order).
    target_iccid: Mapped[str | None] = mapped_column(String(22))
    status: Mapped[OrderStatus] = mapped_column(text_enum(OrderStatus), default=OrderStatus.CREATED)
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    vendor_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("vendors.id", ondelete="RESTRICT"))
    bundle_code: Mapped[str] = mapped_column(String(100))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price_minor: Mapped[int] = mapped_column(BigInteger)
    total_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    wholesale_cost_minor: Mapped[int | None] = mapped_column(BigInteger)
    refunded_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    customer_reference: Mapped[str | None] = mapped_column(String(200))
    workflow_id: Mapped[str] = mapped_column(String(200), unique=True)
    supplier_order_reference: Mapped[str | None] = mapped_column(String(100))
    # Set before the first supplier call, so a retry after a crash knows where to look for an orphan order.
    provisioning_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When a supplier order call was sent that has no definite answer yet (timeout, crash): until the
    # supplier can have committed it, a retry must not buy again.
    supplier_call_sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The supplier call (one eSIM Go order, a line per order) this order's line was last sent in, and its
    # line there: a call in doubt is looked for by its whole composition. Orders before batching: line 0.
    supplier_batch_id: Mapped[uuid.UUID | None] = mapped_column()
    supplier_order_line: Mapped[int] = mapped_column(SmallInteger, default=0, server_default=text("0"))
    # When the order gave up on the supplier (before giving its money back): no call may buy for it after.
    supplier_closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    failure_code: Mapped[str | None] = mapped_column(String(64))
    failure_reason: Mapped[str | None] = mapped_column(String(1000))
    paid_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Who asked for it, as the API saw the caller (api/client_address.py); shown to admins.
    client_ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    # A vendor order's billing mode when it was placed (invoices bill what was bought on credit); None for
    # card orders and for vendor orders whose workflow predates the column.
    billing_mode: Mapped[BillingMode | None] = mapped_column(text_enum(BillingMode))


class Payment(Timestamps, Base):
    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        CheckConstraint(
            "refunded_minor >= 0 AND refunded_minor <= amount_minor", name="refund_within_amount"
        ),
        CheckConstraint("(purpose = 'ORDER') = (order_id IS NOT NULL)", name="order_payment_has_order"),
        CheckConstraint("(purpose = 'TOPUP') = (vendor_id IS NOT NULL)", name="topup_has_vendor"),
        currency_check(),
        Index("uq_payments_provider_provider_payment_id", "provider", "provider_payment_id", unique=True),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    purpose: Mapped[PaymentPurpose] = mapped_column(text_enum(PaymentPurpose))
    order_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("orders.id", ondelete="RESTRICT"), index=True
    )
    vendor_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("vendors.id", ondelete="RESTRICT"), index=True
    )
    provider: Mapped[str] = mapped_column(String(32), default="stripe", server_default=text("'stripe'"))
    provider_payment_id: Mapped[str] = mapped_column(String(255))
    status: Mapped[PaymentStatus] = mapped_column(
        text_enum(PaymentStatus), default=PaymentStatus.REQUIRES_PAYMENT
    )
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    refunded_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    currency: Mapped[str] = mapped_column(String(3))
    workflow_id: Mapped[str] = mapped_column(String(200))
    failure_code: Mapped[str | None] = mapped_column(String(64))
    failure_message: Mapped[str | None] = mapped_column(String(1000))
    succeeded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Refund(Timestamps, Base):
    """Money back on one order; pending refunds count against what is left to refund."""

    __tablename__ = "refunds"
    __table_args__ = (
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        currency_check(),
        Index("ix_refunds_order_id_created_at", "order_id", "created_at"),
        Index(
            "uq_refunds_provider_refund_id",
            "provider_refund_id",
            unique=True,
            postgresql_where=text("provider_refund_id IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id", ondelete="RESTRICT"))
    status: Mapped[RefundStatus] = mapped_column(text_enum(RefundStatus), default=RefundStatus.PENDING)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str] = mapped_column(String(1000))
    requested_by: Mapped[str] = mapped_column(String(100))
    used_esim_override: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    workflow_id: Mapped[str] = mapped_column(String(200), unique=True)
    provider_refund_id: Mapped[str | None] = mapped_column(String(255))
    failure_reason: Mapped[str | None] = mapped_column(String(1000))
    settled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    client_ip: Mapped[str | None] = mapped_column(String(64))  # who asked, as for orders
    user_agent: Mapped[str | None] = mapped_column(String(512))


class Esim(Timestamps, Base):
    __tablename__ = "esims"
    __table_args__ = (
        CheckConstraint("iccid ~ '^[0-9]{18,22}$'", name="iccid_digits"),
        CheckConstraint(
            "data_remaining_bytes IS NULL OR data_remaining_bytes >= 0", name="remaining_non_negative"
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id", ondelete="RESTRICT"), index=True)
    iccid: Mapped[str] = mapped_column(String(22), unique=True)
    matching_id: Mapped[str] = mapped_column(String(100))
    smdp_address: Mapped[str] = mapped_column(String(255))
    status: Mapped[EsimStatus] = mapped_column(text_enum(EsimStatus), default=EsimStatus.RELEASED)
    bundle_name: Mapped[str] = mapped_column(String(100))
    bundle_state: Mapped[str | None] = mapped_column(String(32))
    data_total_bytes: Mapped[int | None] = mapped_column(BigInteger)
    data_remaining_bytes: Mapped[int | None] = mapped_column(BigInteger)
    unlimited: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    first_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # eSIM Go's profile state as last read (released, downloaded, installed, enabled, disabled, deleted…),
    # and when the supplier was last read; every bundle on the eSIM is in `esim_bundles` (models/esims.py).
    profile_status: Mapped[str | None] = mapped_column(String(32))
    refreshed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Notification(Timestamps, Base):
    __tablename__ = "notifications"
    __table_args__ = (
        Index("ix_notifications_status_created_at", "status", "created_at"),
        # One notification per purpose per order, however often the activity that queues it is retried.
        Index("uq_notifications_dedupe_key", "dedupe_key", unique=True),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    dedupe_key: Mapped[str] = mapped_column(String(200))
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    vendor_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("vendors.id", ondelete="SET NULL"))
    order_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("orders.id", ondelete="SET NULL"))
    channel: Mapped[NotificationChannel] = mapped_column(text_enum(NotificationChannel))
    template: Mapped[str] = mapped_column(String(100))
    recipient: Mapped[str] = mapped_column(String(2048))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default=text("'{}'::jsonb"))
    status: Mapped[NotificationStatus] = mapped_column(
        text_enum(NotificationStatus), default=NotificationStatus.QUEUED
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(String(1000))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
