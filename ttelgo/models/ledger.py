"""Double-entry ledger: accounts, immutable transfers, and the vendor-facing statement."""

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
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from ttelgo.models.base import Base, CreatedAt, Timestamps, currency_check, text_enum, uuid_pk


class AccountKind(StrEnum):
    VENDOR_WALLET = "VENDOR_WALLET"
    CARD_CLEARING = "CARD_CLEARING"
    REVENUE = "REVENUE"
    SUPPLIER_COST = "SUPPLIER_COST"
    ADJUSTMENTS = "ADJUSTMENTS"
    SUPPLIER_PAYABLE = "SUPPLIER_PAYABLE"  # what we owe eSIM Go for the bundles our orders bought


class TransferKind(StrEnum):
    SINGLE = "SINGLE"
    PENDING = "PENDING"
    POST_PENDING = "POST_PENDING"
    VOID_PENDING = "VOID_PENDING"


class LedgerEntryType(StrEnum):
    TOPUP = "TOPUP"
    ORDER_HOLD = "ORDER_HOLD"
    ORDER_DEBIT = "ORDER_DEBIT"
    HOLD_RELEASE = "HOLD_RELEASE"
    REFUND = "REFUND"
    ADJUSTMENT = "ADJUSTMENT"


class Account(Timestamps, Base):
    """A wallet's totals are cached here, updated with each transfer under the wallet's row lock (its
    floor is checked against them). Platform accounts have no floor: their columns stay zero and their
    totals are derived from the transfers (view `account_totals`), so no transfer waits on them."""

    __tablename__ = "accounts"
    __table_args__ = (
        # One wallet per vendor and currency, one platform account per kind and currency (NULL vendor).
        UniqueConstraint("kind", "vendor_id", "currency", postgresql_nulls_not_distinct=True),
        currency_check(),
        CheckConstraint(
            "debits_posted_minor >= 0 AND credits_posted_minor >= 0 "
            "AND debits_pending_minor >= 0 AND credits_pending_minor >= 0",
            name="totals_non_negative",
        ),
        CheckConstraint("(kind = 'VENDOR_WALLET') = (vendor_id IS NOT NULL)", name="wallet_has_vendor"),
        CheckConstraint(
            "vendor_id IS NOT NULL OR (debits_posted_minor = 0 AND credits_posted_minor = 0 "
            "AND debits_pending_minor = 0 AND credits_pending_minor = 0)",
            name="no_platform_totals",
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    kind: Mapped[AccountKind] = mapped_column(text_enum(AccountKind))
    vendor_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("vendors.id", ondelete="RESTRICT"))
    currency: Mapped[str] = mapped_column(String(3))
    # Wallets are credit-normal: balance = credits − debits; the floor is −overdraft_limit (0 for PREPAID).
    enforce_floor: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    overdraft_limit_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    debits_posted_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    credits_posted_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    debits_pending_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    credits_pending_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))


class Transfer(CreatedAt, Base):
    """Immutable. The id is chosen by the caller (e.g. workflow id + step) so a retry finds its own row."""

    __tablename__ = "transfers"
    __table_args__ = (
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        CheckConstraint("debit_account_id <> credit_account_id", name="distinct_accounts"),
        CheckConstraint(
            "(kind IN ('POST_PENDING', 'VOID_PENDING')) = (pending_id IS NOT NULL)",
            name="resolution_names_pending",
        ),
        currency_check(),
        # A pending transfer is posted or voided at most once.
        Index(
            "uq_transfers_pending_id",
            "pending_id",
            unique=True,
            postgresql_where=text("pending_id IS NOT NULL"),
        ),
        Index("ix_transfers_debit_account_id_created_at", "debit_account_id", "created_at"),
        Index("ix_transfers_credit_account_id_created_at", "credit_account_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    kind: Mapped[TransferKind] = mapped_column(text_enum(TransferKind))
    debit_account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="RESTRICT"))
    credit_account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="RESTRICT"))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    pending_id: Mapped[str | None] = mapped_column(ForeignKey("transfers.id", ondelete="RESTRICT"))
    # Pending holds expire into a void if nobody posts them (set by the caller, enforced by a workflow timer).
    timeout_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    code: Mapped[str] = mapped_column(String(64))
    order_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("orders.id", ondelete="RESTRICT"), index=True
    )
    memo: Mapped[str | None] = mapped_column(String(500))
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONB, default=dict, server_default=text("'{}'::jsonb")
    )


class VendorLedgerEntry(CreatedAt, Base):
    """The vendor's statement: one row per movement on a wallet, with the balances after it."""

    __tablename__ = "vendor_ledger_entries"
    __table_args__ = (
        UniqueConstraint("transfer_id", "account_id"),
        Index("ix_vendor_ledger_entries_vendor_id_created_at", "vendor_id", "created_at"),
        currency_check(),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    vendor_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("vendors.id", ondelete="RESTRICT"))
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="RESTRICT"))
    transfer_id: Mapped[str] = mapped_column(ForeignKey("transfers.id", ondelete="RESTRICT"))
    order_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("orders.id", ondelete="RESTRICT"))
    entry_type: Mapped[LedgerEntryType] = mapped_column(text_enum(LedgerEntryType))
    # Signed from the vendor's side: a credit to the wallet is positive.
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    balance_after_minor: Mapped[int] = mapped_column(BigInteger)
    available_after_minor: Mapped[int] = mapped_column(BigInteger)
    description: Mapped[str | None] = mapped_column(String(500))
