"""Render domain objects as the live eSIM Go JSON shapes (field names and units as on the wire)."""

from datetime import datetime, timedelta
from typing import Any

from .state import Assignment, ESim, InventoryItem, Order, Organisation, PricedOrder

INVENTORY_SHELF_LIFE = timedelta(days=365)


def iso(dt: datetime | None) -> str | None:
    return None if dt is None else dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def epoch_ms(dt: datetime | None) -> int | None:
    return None if dt is None else int(dt.timestamp() * 1000)


def esim_ref(esim: ESim) -> dict[str, str]:
    return {"iccid": esim.iccid, "matchingId": esim.matching_id, "smdpAddress": esim.smdp_address}


def order(o: Order, include_esims: bool = True) -> dict[str, Any]:
    lines: list[dict[str, Any]] = []
    for line in o.lines:
        p = line.priced
        rendered: dict[str, Any] = {
            "type": "bundle",
            "item": p.bundle.name,
            "quantity": p.quantity,
            "subTotal": float(p.subtotal),
            "pricePerUnit": float(p.price_per_unit),
            "AllowReassign": p.allow_reassign,  # capitalised on the live wire, unlike the request field
        }
        # Processing (async) orders carry no esims yet; clients poll the order or the assignments.
        if include_esims and o.assign and o.status == "completed":
            rendered["esims"] = [esim_ref(e) for e in line.esims]
            rendered["iccids"] = [e.iccid for e in line.esims]
        lines.append(rendered)
    return {
        "order": lines,
        "total": float(o.total),
        "currency": "USD",
        "status": o.status,
        "statusMessage": o.status_message,
        "orderReference": o.reference,
        "createdDate": iso(o.created_at),
        "assigned": o.assign,
    }


def validation(p: PricedOrder) -> dict[str, Any]:
    return {
        "order": [
            {
                "type": "bundle",
                "item": line.bundle.name,
                "quantity": line.quantity,
                "subTotal": float(line.subtotal),
                "pricePerUnit": float(line.price_per_unit),
                "AllowReassign": line.allow_reassign,
            }
            for line in p.lines
        ],
        "total": float(p.total),
        "valid": True,
        "currency": "USD",
        "createdDate": iso(p.created_at),
        "assigned": p.assign,
    }


def install_details(esim: ESim) -> dict[str, Any]:
    return {
        **esim_ref(esim),
        "profileStatus": esim.profile_status.value,
        "pin": esim.pin,
        "puk": esim.puk,
        "firstInstalledDateTime": iso(esim.first_installed_at),
    }


def esim_details(esim: ESim) -> dict[str, Any]:
    return {
        "iccid": esim.iccid,
        "pin": esim.pin,
        "puk": esim.puk,
        "matchingId": esim.matching_id,
        "smdpAddress": esim.smdp_address,
        "profileStatus": esim.profile_status.value,
        "firstInstalledDateTime": epoch_ms(esim.first_installed_at),  # ms since epoch, per the v2.4 spec
        "customerRef": esim.customer_ref,
    }


def assignment(a: Assignment) -> dict[str, Any]:
    return {
        "id": a.id,
        "callTypeGroup": "data",
        "initialQuantity": a.initial_bytes,
        "remainingQuantity": a.remaining_bytes,
        "assignmentDateTime": iso(a.assigned_at),
        "assignmentReference": a.reference,
        "bundleState": a.state.value,
        "unlimited": a.bundle.unlimited,
    }


def esim_bundles(assignments: list[Assignment]) -> dict[str, Any]:
    grouped: dict[str, dict[str, Any]] = {}
    for a in assignments:
        entry = grouped.setdefault(
            a.bundle.name, {"name": a.bundle.name, "description": a.bundle.description, "assignments": []}
        )
        entry["assignments"].append(assignment(a))
    return {"bundles": list(grouped.values())}


def alert_bundle(a: Assignment) -> dict[str, Any]:
    return {
        "id": a.id,
        "reference": a.reference,
        "name": a.bundle.name,
        "description": a.bundle.description,
        "initialQuantity": a.initial_bytes,
        "remainingQuantity": a.remaining_bytes,
        "startTime": iso(a.start_time),
        "endTime": iso(a.end_time),
        "unlimited": a.bundle.unlimited,
    }


def organisation(
    org: Organisation, api_key: str, callback_url: str | None, groups: list[str]
) -> dict[str, Any]:
    return {
        "organisations": [
            {
                "name": org.name,
                "apiKey": f"{api_key[:4]}****",  # never echo the whole key
                "taxLiable": "No",
                "addr1": "1 Sandbox Street",
                "addr2": "",
                "city": "London",
                "country": "GB",
                "postcode": "EC1A 1AA",
                "callbackUrl": callback_url or "",
                "notes": "eSIM Go simulator",
                "groups": groups,
                "currency": org.currency,
                "balance": float(org.balance),
                "testCredit": 0,
                "businessType": "Reseller",
                "website": "https://sandbox.ttelgo.test",
                "productDescription": "eSIM data bundles",
                "users": [],
            }
        ]
    }


def inventory(items: list[InventoryItem]) -> dict[str, Any]:
    grouped: dict[str, dict[str, Any]] = {}
    for item in items:
        b = item.bundle
        entry = grouped.setdefault(
            b.name,
            {
                "name": b.name,
                "desc": b.description,
                "useDms": False,
                "available": [],
                "countries": [c.iso for c in b.countries],
                "data": b.data_mb,
                "duration": b.duration_days,
                "durationUnit": "day",
                "autostart": b.autostart,
                "unlimited": b.unlimited,
                "speed": list(b.speed),
                "allowances": b.to_api()["allowances"],
            },
        )
        entry["available"].append(
            {
                "id": item.usage_id,
                "total": item.total,
                "remaining": item.remaining,
                "expiry": (item.purchased_at + INVENTORY_SHELF_LIFE).date().isoformat(),
            }
        )
    return {"bundles": list(grouped.values())}
