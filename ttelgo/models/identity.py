"""Who acts: customers and staff (users), reseller businesses (vendors), their team and API keys."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, CheckConstraint, DateTime, ForeignKey, Index, Integer, String, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from ttelgo.models.base import (
    Base,
    CreatedAt,
    SoftDelete,
    Timestamps,
    currency_check,
    text_enum,
    uuid_pk,
)


class UserRole(StrEnum):
    CUSTOMER = "customer"
    ADMIN = "admin"


class VendorStatus(StrEnum):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    SUSPENDED = "SUSPENDED"
    REJECTED = "REJECTED"


class BillingMode(StrEnum):
    PREPAID = "PREPAID"
    POSTPAID = "POSTPAID"


class VendorUserRole(StrEnum):
    OWNER = "owner"
    DEVELOPER = "developer"
    VIEWER = "viewer"


class User(Timestamps, SoftDelete, Base):
    __tablename__ = "users"
    __table_args__ = (
        # E-mail is unique case-insensitively among live accounts.
        Index(
            "uq_users_email_lower",
            func.lower(text("email")),
            unique=True,
            postgresql_where=text("deleted_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    email: Mapped[str] = mapped_column(String(320))
    password_hash: Mapped[str] = mapped_column(String(255))
    full_name: Mapped[str | None] = mapped_column(String(200))
    role: Mapped[UserRole] = mapped_column(text_enum(UserRole), default=UserRole.CUSTOMER)
    is_active: Mapped[bool] = mapped_column(default=True, server_default=text("true"))
    email_verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Vendor(Timestamps, SoftDelete, Base):
    __tablename__ = "vendors"
    __table_args__ = (
        Index(
            "uq_vendors_email_lower",
            func.lower(text("contact_email")),
            unique=True,
            postgresql_where=text("deleted_at IS NULL"),
        ),
        Index("ix_vendors_status_created_at", "status", "created_at"),
        CheckConstraint("credit_limit_minor >= 0", name="credit_limit_non_negative"),
        CheckConstraint("payment_terms_days >= 0", name="payment_terms_non_negative"),
        CheckConstraint("markup_bps IS NULL OR markup_bps >= 0", name="markup_non_negative"),
        CheckConstraint(
            "rate_limit_per_minute IS NULL OR rate_limit_per_minute > 0", name="rate_limit_positive"
        ),
        currency_check(),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    name: Mapped[str] = mapped_column(String(200))
    contact_email: Mapped[str] = mapped_column(String(320))
    status: Mapped[VendorStatus] = mapped_column(text_enum(VendorStatus), default=VendorStatus.PENDING)
    billing_mode: Mapped[BillingMode] = mapped_column(text_enum(BillingMode), default=BillingMode.PREPAID)
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    credit_limit_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    # Vendor price = wholesale × (1 + markup); NULL means the platform default in system_config.
    markup_bps: Mapped[int | None] = mapped_column(Integer)
    # A `wallet.low_balance` webhook and e-mail when an order takes the wallet's available balance below
    # this (having been at or above it); NULL means no alert.
    low_balance_threshold_minor: Mapped[int | None] = mapped_column(BigInteger)
    # Requests per minute this vendor's keys and team may make together; NULL means RATE_LIMIT_VENDOR.
    rate_limit_per_minute: Mapped[int | None] = mapped_column(Integer)
    # POSTPAID invoices fall due this many days after they are issued.
    payment_terms_days: Mapped[int] = mapped_column(Integer, default=30, server_default=text("30"))
    webhook_url: Mapped[str | None] = mapped_column(String(2048))
    webhook_secret: Mapped[str | None] = mapped_column(String(128))
    # The event types the vendor subscribes to; NULL means every type.
    webhook_events: Mapped[list[str] | None] = mapped_column(JSONB)
    # After a rotation the previous secret keeps signing, alongside the new one, until it expires.
    webhook_previous_secret: Mapped[str | None] = mapped_column(String(128))
    webhook_previous_secret_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    approved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    suspended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class VendorUser(Timestamps, SoftDelete, Base):
    __tablename__ = "vendor_users"
    __table_args__ = (
        Index(
            "uq_vendor_users_email_lower",
            func.lower(text("email")),
            unique=True,
            postgresql_where=text("deleted_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    vendor_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("vendors.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(320))
    password_hash: Mapped[str] = mapped_column(String(255))
    full_name: Mapped[str | None] = mapped_column(String(200))
    role: Mapped[VendorUserRole] = mapped_column(text_enum(VendorUserRole), default=VendorUserRole.VIEWER)
    is_active: Mapped[bool] = mapped_column(default=True, server_default=text("true"))
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ApiKey(Timestamps, Base):
    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = uuid_pk()
    vendor_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("vendors.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    # The visible start of the key (shown in lists) is unique, so a presented key finds its row at once.
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    key_hash: Mapped[str] = mapped_column(String(255))
    created_by_user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_by_vendor_user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("vendor_users.id", ondelete="SET NULL")
    )
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AccountRealm(StrEnum):
    """Which table a login account lives in (one e-mail may be both a customer and a vendor team member)."""

    USER = "user"  # users: customers and staff
    VENDOR_USER = "vendor_user"  # vendor_users


class SessionEnd(StrEnum):
    LOGOUT = "LOGOUT"
    LOGOUT_EVERYWHERE = "LOGOUT_EVERYWHERE"
    TOKEN_REUSE = "TOKEN_REUSE"  # a used refresh token came back: it was stolen, or the client was
    PASSWORD_RESET = "PASSWORD_RESET"
    DEACTIVATED = "DEACTIVATED"  # the account (or its vendor) was deactivated


class AuthSession(CreatedAt, Base):
    """One login: a family of refresh tokens, each used once. The access tokens it issues name it (`sid`),
    so revoking it ends them too."""

    __tablename__ = "auth_sessions"
    __table_args__ = (Index("ix_auth_sessions_realm_principal_id", "realm", "principal_id"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    realm: Mapped[AccountRealm] = mapped_column(text_enum(AccountRealm))
    # users.id or vendor_users.id, by realm (accounts are soft-deleted, so no cascade is needed).
    principal_id: Mapped[uuid.UUID]
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_reason: Mapped[SessionEnd | None] = mapped_column(text_enum(SessionEnd))


class RefreshToken(CreatedAt, Base):
    """A refresh token, stored as the SHA-256 of its 256 random bits (never in clear)."""

    __tablename__ = "refresh_tokens"

    id: Mapped[uuid.UUID] = uuid_pk()
    session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("auth_sessions.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class LoginFailure(Base):
    """Consecutive failed logins for one e-mail in one realm, known account or not (so a lockout says
    nothing about whether the account exists). The key is a hash: unknown e-mails are not kept in clear."""

    __tablename__ = "login_failures"

    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    last_failure_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PasswordReset(CreatedAt, Base):
    """A password-reset token sent by e-mail: stored hashed, expires, works once."""

    __tablename__ = "password_resets"
    __table_args__ = (Index("ix_password_resets_realm_principal_id", "realm", "principal_id"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    realm: Mapped[AccountRealm] = mapped_column(text_enum(AccountRealm))
    principal_id: Mapped[uuid.UUID]
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
