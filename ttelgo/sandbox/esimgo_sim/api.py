"""The eSIM Go v2.4 routes the simulator answers, with the live service's shapes (mounted under /v2.4)."""

import csv
import io
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from . import views
from .catalogue import GROUPS
from .errors import ApiError
from .runtime import Simulator
from .schemas import InventoryRefund, OrderRequest
from .state import FINISHED_STATES, BundleState

router = APIRouter()
ASSIGNMENT_COLUMNS: tuple[str, ...] = (
    "iccid",
    "matchingId",
    "smdpAddress",
    "profileStatus",
    "pin",
    "puk",
    "firstInstalledDateTime",
)


def get_sim(request: Request) -> Simulator:
    return request.app.state.sim


Sim = Annotated[Simulator, Depends(get_sim)]


def _paged(items: list[Any], page: int, per_page: int) -> tuple[list[Any], int]:
    if page < 1 or per_page < 1:
        raise ApiError(400, "page and limit must be positive integers")
    start = (page - 1) * per_page
    return items[start : start + per_page], -(-len(items) // per_page)


# ----- catalogue -----
@router.get("/catalogue")
async def list_catalogue(
    sim: Sim,
    page: int = 1,
    per_page: Annotated[int, Query(alias="perPage")] = 50,
    direction: str = "asc",
    order_by: Annotated[str | None, Query(alias="orderBy")] = None,
    description: str | None = None,
    group: str | None = None,
    countries: str | None = None,
    region: str | None = None,
) -> dict[str, Any]:
    isos = [c.strip().upper() for c in countries.split(",") if c.strip()] if countries else []
    result = sim.catalogue.query(
        page=page,
        per_page=per_page,
        direction=direction,
        order_by=order_by,
        description=description,
        group=group,
        countries=isos,
        region=region,
    )
    # The live service wraps the list (the v2.4 spec shows a bare array).
    return {
        "bundles": [b.to_api() for b in result.bundles],
        "pageCount": result.page_count,
        "rows": result.rows,
        "pageSize": result.page_size,
    }


@router.get("/catalogue/bundle/{name}")
async def get_bundle(sim: Sim, name: str) -> dict[str, Any]:
    return sim.catalogue.require(name).to_api()


# ----- organisation -----
@router.get("/organisation")
async def get_organisation(sim: Sim) -> dict[str, Any]:
    return views.organisation(sim.state.org, sim.config.api_key, sim.callback_url, list(GROUPS))


@router.get("/organisation/groups")
async def get_groups() -> dict[str, Any]:
    return {"groups": [{"name": g} for g in GROUPS]}


# ----- orders -----
@router.post("/orders")
async def create_order(sim: Sim, body: OrderRequest) -> dict[str, Any]:
    priced = sim.state.price(body)
    if body.type == "validate":
        sim.stats.validations += 1
        return views.validation(priced)
    order = sim.state.place(priced)
    sim.stats.record_order([(line.bundle.name, line.quantity) for line in priced.lines])
    if sim.is_async(order.bundle_count):
        sim.complete_later(order)
    else:
        sim.state.fulfil(order.reference)
    return views.order(order)


@router.get("/orders")
async def list_orders(
    sim: Sim,
    page: int = 1,
    limit: int = 10,
    include_iccids: Annotated[bool, Query(alias="includeIccids")] = False,
) -> dict[str, Any]:
    orders = sim.state.list_orders()
    chunk, page_count = _paged(orders, page, limit)
    return {
        "orders": [views.order(o, include_esims=include_iccids) for o in chunk],
        "pageCount": page_count,
        "rows": len(orders),
        "pageSize": limit,
    }


@router.get("/orders/{orderReference}")
async def get_order(
    sim: Sim, order_reference: Annotated[str, Path(alias="orderReference")]
) -> dict[str, Any]:
    return views.order(sim.state.get_order(order_reference))


# ----- eSIMs (static paths before /esims/{iccid}) -----
@router.get("/esims/assignments", response_model=None)
async def get_assignments(
    sim: Sim, request: Request, reference: Annotated[list[str] | None, Query()] = None
) -> Response:
    refs = [r.strip() for value in reference or [] for r in value.split(",") if r.strip()]
    if not refs:
        raise ApiError(400, "reference is required")
    # Until an async order completes it has no eSIMs, so this answers an empty list (poll again).
    rows = [views.install_details(e) for e in sim.state.esims_for_references(refs)]
    accept = request.headers.get("accept", "")
    if "application/json" in accept:
        return JSONResponse(rows)
    if "application/zip" in accept:
        raise ApiError(406, "application/zip (QR code PNGs) is not supported by the simulator")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=ASSIGNMENT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row[k] is None else row[k] for k in ASSIGNMENT_COLUMNS})
    return Response(buffer.getvalue(), media_type="text/csv")


@router.get("/esims")
async def list_esims(
    sim: Sim, page: int = 1, per_page: Annotated[int, Query(alias="perPage")] = 50
) -> dict[str, Any]:
    esims = sorted(sim.state.esims.values(), key=lambda e: e.created_at)
    chunk, page_count = _paged(esims, page, per_page)
    rendered = []
    for e in chunk:
        last = e.assignments[-1] if e.assignments else None
        rendered.append(
            {
                "iccid": e.iccid,
                "customerRef": e.customer_ref,
                "lastAction": "Bundle Applied" if last else "",
                "actionDate": views.iso(last.assigned_at if last else e.created_at),
                "physical": False,
                "assignedDate": views.iso(e.created_at),
            }
        )
    return {"esims": rendered, "pageCount": page_count, "rows": len(esims), "pageSize": per_page}


@router.get("/esims/{iccid}")
async def get_esim(sim: Sim, iccid: str) -> dict[str, Any]:
    return views.esim_details(sim.state.esim(iccid))


@router.get("/esims/{iccid}/bundles")
async def get_esim_bundles(
    sim: Sim,
    iccid: str,
    include_used: Annotated[bool, Query(alias="includeUsed")] = True,
    limit: Annotated[int, Query(ge=1, le=200)] = 200,
) -> dict[str, Any]:
    assignments = sim.state.esim(iccid).assignments
    if not include_used:
        assignments = [a for a in assignments if a.state not in FINISHED_STATES | {BundleState.DEPLETED}]
    return views.esim_bundles(assignments[-limit:])


@router.get("/esims/{iccid}/bundles/{name}")
async def get_esim_bundle(sim: Sim, iccid: str, name: str) -> dict[str, Any]:
    matching = [a for a in sim.state.esim(iccid).assignments if a.bundle.name == name]
    if not matching:
        raise ApiError(400, f"Bundle {name} is not applied to eSIM {iccid}")
    return {"assignments": [views.assignment(a) for a in reversed(matching)]}  # latest first


@router.delete("/esims/{iccid}/bundles/{name}")
async def revoke_bundle(
    sim: Sim,
    iccid: str,
    name: str,
    mode: Annotated[Literal["validate", "transaction"], Query(alias="type")] = "transaction",
    refund_to_balance: Annotated[bool, Query(alias="refundToBalance")] = False,
) -> dict[str, str]:
    outcome = sim.state.revoke(iccid, name, refund_to_balance, execute=mode == "transaction")
    return {"status": outcome.message}


# ----- inventory -----
@router.get("/inventory")
async def get_inventory(sim: Sim) -> dict[str, Any]:
    return views.inventory([i for i in sim.state.inventory.values() if i.remaining > 0])


@router.post("/inventory/refund")
async def refund_inventory(sim: Sim, body: InventoryRefund) -> dict[str, str]:
    sim.state.refund_inventory(body.usage_id, body.quantity)
    return {"status": "Successfully refunded bundles to balance"}
