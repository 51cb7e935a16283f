"""The local copy of the supplier's catalogue, refreshed by a Temporal Schedule; requests only read it."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, DateTime, Index, Integer, String, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from ttelgo.models.base import Base, Timestamps, currency_check, text_enum


class BundleScope(StrEnum):
    LOCAL = "LOCAL"
    REGIONAL = "REGIONAL"
    GLOBAL = "GLOBAL"


class CatalogueBundle(Timestamps, Base):
    __tablename__ = "catalogue_bundles"
    __table_args__ = (
        Index("ix_catalogue_bundles_country_isos", "country_isos", postgresql_using="gin"),
        Index("ix_catalogue_bundles_active_wholesale_minor", "active", "wholesale_minor"),
        currency_check(),
    )

    code: Mapped[str] = mapped_column(String(100), primary_key=True)  # the supplier's bundle name
    description: Mapped[str] = mapped_column(String(500))
    scope: Mapped[BundleScope] = mapped_column(text_enum(BundleScope))
    countries: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    country_isos: Mapped[list[str]] = mapped_column(ARRAY(String(2)))
    regions: Mapped[list[str]] = mapped_column(ARRAY(String(64)))
    data_mb: Mapped[int | None] = mapped_column(Integer)
    duration_days: Mapped[int] = mapped_column(Integer)
    unlimited: Mapped[bool] = mapped_column()
    speeds: Mapped[list[str]] = mapped_column(ARRAY(String(16)))
    wholesale_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    active: Mapped[bool] = mapped_column(default=True, server_default=text("true"))
    synced_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
