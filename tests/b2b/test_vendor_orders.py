"""B2B orders end to end: REST → workflow → wallet hold → eSIM Go simulator → eSIMs → posted debit."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import select
from temporalio.client import WorkflowExecutionStatus
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from tests.b2b.conftest import B2B, BUNDLE
from ttelgo.models import Transfer, TransferKind
from workflows.order import OrderWorkflow


async def _price(b2b: B2B) -> int:
    return (await b2b.api.get(f"/api/v1/catalogue/bundles/{BUNDLE}")).json()["price"]["amount_minor"]


async def test_order_completes_with_esims_and_debits_the_vendor_price(b2b: B2B) -> None:
    vendor = await b2b.new_vendor(balance=10_000, markup_bps=1000)
    response = await b2b.order(vendor, quantity=2, customer_reference="trip-42")
    assert response.status_code == 201, response.text
    order = response.json()
    unit = -(-(await b2b.wholesale()) * 11_000 // 10_000)  # wholesale + the vendor's 10 % markup
    assert order["status"] == "COMPLETED" and order["unit_price_minor"] == unit
    assert order["total_minor"] == 2 * unit and order["customer_reference"] == "trip-42"
    assert len(order["esims"]) == 2
    for esim in order["esims"]:
        assert esim["lpa"] == f"LPA:1${esim['smdp_address']}${esim['matching_id']}"
        png = await b2b.api.get(esim["qr_code_url"], headers=vendor.headers)
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        assert png.content.startswith(b"\x89PNG")

    wallet = await b2b.wallet(vendor)
    assert wallet == {
        "currency": "USD",
        "balance_minor": 10_000 - 2 * unit,
        "available_minor": 10_000 - 2 * unit,
        "held_minor": 0,
        "credit_limit_minor": 0,
    }
    statement = (await b2b.api.get("/api/v1/vendor/ledger", headers=vendor.headers)).json()["items"]
    assert [e["entry_type"] for e in statement] == ["ORDER_DEBIT", "ORDER_HOLD", "ADJUSTMENT"]
    assert statement[0]["balance_after_minor"] == 10_000 - 2 * unit
    assert b2b.sim.stats()["orders"]["transactions"] == 1

    listed = (await b2b.api.get("/api/v1/vendor/orders", headers=vendor.headers)).json()
    assert listed["total"] == 1 and listed["items"][0]["id"] == order["id"]
    for params, expected in (
        ({"status": "COMPLETED"}, 1),
        ({"status": "FAILED"}, 0),
        ({"created_from": order["created_at"]}, 1),
        ({"created_to": order["created_at"]}, 0),
    ):
        filtered = await b2b.api.get("/api/v1/vendor/orders", params=params, headers=vendor.headers)
        assert filtered.json()["total"] == expected, params
    esims = (await b2b.api.get(f"/api/v1/vendor/orders/{order['id']}/esims", headers=vendor.headers)).json()
    assert {e["iccid"] for e in esims} == {e["iccid"] for e in order["esims"]}


async def test_without_waiting_the_order_is_202_and_can_be_polled(b2b: B2B) -> None:
    vendor = await b2b.new_vendor(balance=10_000)
    b2b.sim.faults(**{"POST /orders": {"latency_ms": 1500}})
    response = await b2b.order(vendor, wait=0)
    assert response.status_code == 202
    location = response.headers["Location"]
    running = (await b2b.api.get(location, headers=vendor.headers)).json()
    assert running["status"] == "PROVISIONING" and running["progress"]["step"] == "ordering at eSIM Go"
    for _ in range(100):
        polled = (await b2b.api.get(location, headers=vendor.headers)).json()
        if polled["status"] == "COMPLETED":
            break
        await asyncio.sleep(0.1)
    assert polled["status"] == "COMPLETED" and polled["progress"] is None and len(polled["esims"]) == 1


async def test_insufficient_funds_is_402_and_holds_nothing(b2b: B2B) -> None:
    price = await b2b.wholesale()
    vendor = await b2b.new_vendor(balance=price - 1)
    response = await b2b.order(vendor)
    assert response.status_code == 402
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "INSUFFICIENT_FUNDS"
    assert (await b2b.wallet(vendor))["available_minor"] == price - 1
    assert b2b.sim.stats()["orders"]["transactions"] == 0


async def test_transient_supplier_faults_are_retried_to_success(b2b: B2B) -> None:
    vendor = await b2b.new_vendor(balance=10_000)
    b2b.sim.faults(**{"POST /orders": {"fail_next": 2, "error_status": 503}})
    response = await b2b.order(vendor, wait=20)
    assert response.status_code == 201 and response.json()["status"] == "COMPLETED"
    stats = b2b.sim.stats()
    assert stats["orders"]["transactions"] == 1
    assert stats["requests"]["POST /orders"] == 3


async def test_permanent_supplier_failure_voids_the_hold(b2b: B2B) -> None:
    vendor = await b2b.new_vendor(balance=10_000)
    b2b.sim.faults(**{"POST /orders": {"no_bundles_left": True}})
    response = await b2b.order(vendor)
    assert response.status_code == 201
    order = response.json()
    assert order["status"] == "FAILED" and order["failure_code"] == "SupplierNoStock"
    assert "Bundles left" in order["failure_reason"]
    assert await b2b.wallet(vendor) == {
        "currency": "USD",
        "balance_minor": 10_000,
        "available_minor": 10_000,
        "held_minor": 0,
        "credit_limit_minor": 0,
    }
    statement = (await b2b.api.get("/api/v1/vendor/ledger", headers=vendor.headers)).json()["items"]
    assert [e["entry_type"] for e in statement] == ["HOLD_RELEASE", "ORDER_HOLD", "ADJUSTMENT"]


async def test_large_orders_wait_for_the_supplier_to_finish(b2b: B2B) -> None:
    vendor = await b2b.new_vendor(balance=100_000)
    b2b.sim.faults(**{"GET /esims/assignments": {"fail_next": 1, "error_status": 500}})
    response = await b2b.order(vendor, quantity=6, wait=20)
    assert response.status_code == 201 and len(response.json()["esims"]) == 6
    assert b2b.sim.stats()["requests"]["GET /esims/assignments"] >= 2  # read after the supplier finished


async def test_search_attributes_and_one_run_per_order(b2b: B2B) -> None:
    vendor = await b2b.new_vendor(balance=10_000)
    order = (await b2b.order(vendor)).json()
    found = [w async for w in b2b.temporal.list_workflows(f"OrderId = '{order['id']}'")]
    assert len(found) == 1 and found[0].status is WorkflowExecutionStatus.COMPLETED
    attributes = {k.name: v for k, v in found[0].typed_search_attributes}
    assert attributes["OrderStatus"] == "COMPLETED" and attributes["Channel"] == "B2B"
    assert attributes["VendorId"] == vendor.id and attributes["BundleName"] == BUNDLE
    handle = b2b.temporal.get_workflow_handle(found[0].id)
    assert (await handle.query(OrderWorkflow.status)).status.value == "COMPLETED"
    try:
        await b2b.temporal.start_workflow(
            "Order",
            id=found[0].id,
            task_queue=b2b.settings.temporal_task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
        raise AssertionError("a second run of the same order started")
    except WorkflowAlreadyStartedError:
        pass
    async with b2b.sessions() as session:
        transfers = (
            await session.scalars(select(Transfer).where(Transfer.order_id == uuid.UUID(order["id"])))
        ).all()
    # The wallet's hold and its posting, and the supplier cost booked once.
    assert sorted((t.kind, t.id.split(":")[-1]) for t in transfers) == [
        (TransferKind.PENDING, "hold"),
        (TransferKind.POST_PENDING, "post"),
        (TransferKind.SINGLE, "supplier-cost"),
    ]
