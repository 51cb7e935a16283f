"""Supplier JSON → domain types. The only place that knows eSIM Go's field names and quirks."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from ttelgo.esimgo.types import (
    Bundle,
    BundleUsage,
    CataloguePage,
    Country,
    EsimProfile,
    Organisation,
    PurchaseLine,
    SupplierOrder,
    SupplierOrderLine,
)
from ttelgo.money import to_minor

SUPPLIER_CURRENCY = "USD"


def as_list(payload: Any, key: str) -> list[dict[str, Any]]:
    """The live service wraps lists (`{"bundles": [...]}`) where the spec shows bare arrays: accept both."""
    if isinstance(payload, list):
        return payload
    if isinstance(payload, dict) and isinstance(payload.get(key), list):
        return payload[key]
    raise ValueError(f"expected a list or an object with {key!r}, got {type(payload).__name__}")


def _countries(raw: list[dict[str, Any]] | None) -> tuple[Country, ...]:
    return tuple(
        Country(
            iso=str(c.get("iso", "")).upper(), name=str(c.get("name", "")), region=str(c.get("region", ""))
        )
        for c in raw or []
    )


def bundle(raw: dict[str, Any], currency: str = SUPPLIER_CURRENCY) -> Bundle:
    unlimited = bool(raw.get("unlimited", False))
    data_amount = raw.get("dataAmount")
    return Bundle(
        name=raw["name"],
        description=raw.get("description") or raw["name"],
        countries=_countries(raw.get("countries")),
        roaming_countries=_countries(raw.get("roamingEnabled")),
        groups=tuple(raw.get("groups") or ()),
        data_mb=None if unlimited or data_amount in (None, -1) else int(data_amount),
        duration_days=int(raw.get("duration") or 0),
        unlimited=unlimited,
        speeds=tuple(raw.get("speed") or ()),
        autostart=bool(raw.get("autostart", False)),
        price_minor=to_minor(Decimal(str(raw["price"])), currency),
        currency=currency,
        image_url=raw.get("imageUrl") or None,
    )


def catalogue_page(payload: Any, *, page: int, per_page: int) -> CataloguePage:
    bundles = tuple(bundle(b) for b in as_list(payload, "bundles"))
    if isinstance(payload, dict):
        page_count, rows = int(payload.get("pageCount", 1)), int(payload.get("rows", len(bundles)))
    else:  # bare array: a short page is the last one
        page_count, rows = (page + 1 if len(bundles) >= per_page else page), len(bundles)
    return CataloguePage(bundles=bundles, page=page, page_count=page_count, rows=rows)


def esim_profile(raw: dict[str, Any]) -> EsimProfile:
    return EsimProfile(
        iccid=str(raw["iccid"]).strip(),
        matching_id=str(raw.get("matchingId") or raw.get("matching_id") or "").strip(),
        smdp_address=str(raw.get("smdpAddress") or raw.get("rspUrl") or "").strip(),
        profile_status=raw.get("profileStatus") or None,
    )


def supplier_order(raw: dict[str, Any]) -> SupplierOrder:
    status = str(raw.get("status", "")).lower()
    return SupplierOrder(
        reference=str(raw.get("orderReference", "")),
        status=status,
        completed=status == "completed",
        total_minor=to_minor(Decimal(str(raw.get("total", 0))), raw.get("currency") or SUPPLIER_CURRENCY),
        currency=raw.get("currency") or SUPPLIER_CURRENCY,
        lines=tuple(
            SupplierOrderLine(
                bundle_name=str(line.get("item", "")),
                quantity=int(line.get("quantity", 0)),
                esims=tuple(esim_profile(e) for e in line.get("esims") or []),
            )
            for line in raw.get("order") or []
        ),
        created_at=_timestamp(raw.get("createdDate")),
    )


def order_item(line: PurchaseLine) -> dict[str, Any]:
    """A line of `POST /orders`: never reassignable, and a top-up names the eSIMs it goes on."""
    item: dict[str, Any] = {
        "type": "bundle",
        "quantity": line.quantity,
        "item": line.bundle_name,
        "allowReassign": False,
    }
    if line.iccids:
        item["iccids"] = list(line.iccids)
    return item


def _timestamp(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def bundle_usages(payload: Any) -> list[BundleUsage]:
    usages = []
    for b in as_list(payload, "bundles"):
        for a in b.get("assignments") or []:
            usages.append(
                BundleUsage(
                    name=b["name"],
                    state=str(a.get("bundleState", "")),
                    initial_bytes=a.get("initialQuantity"),
                    remaining_bytes=a.get("remainingQuantity"),
                    unlimited=bool(a.get("unlimited", False)),
                    assigned_at=_timestamp(a.get("assignmentDateTime")),
                    reference=a.get("assignmentReference") or None,
                )
            )
    return usages


def organisation(payload: Any) -> Organisation:
    raw = (
        as_list(payload, "organisations")[0]
        if isinstance(payload, list) or "organisations" in payload
        else payload
    )
    currency = raw.get("currency") or SUPPLIER_CURRENCY
    return Organisation(
        name=raw.get("name", ""),
        currency=currency,
        balance_minor=to_minor(Decimal(str(raw.get("balance", 0))), currency),
    )
