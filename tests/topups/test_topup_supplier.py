"""A top-up at eSIM Go: an in-doubt call is adopted, never bought twice; giving a top-up's bundle back takes
that bundle and no other, whatever state the bundles of the same name beside it are in."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from temporalio.testing import ActivityEnvironment

from activities.contracts import OrderInput
from activities.esimgo import SupplierActivities
from tests.b2b.conftest import B2B, BUNDLE, VendorHandle
from tests.support.esimgo import SIM_API_KEY
from ttelgo.esim_bundles import BundleReport, apply_report, ensure_sold_bundles, lock_esim
from ttelgo.models import Channel, Esim, EsimBundle, Order, OrderStatus

LATE_COMMITS = {"settings": {"esimgo_timeout_seconds": 1, "esimgo_commit_delay_seconds": 5}}


async def _esim(b2b: B2B, vendor: VendorHandle) -> str:
    response = await b2b.order(vendor, wait=30)
    assert response.status_code == 201 and response.json()["status"] == "COMPLETED", response.text
    return str(response.json()["esims"][0]["iccid"])


async def _topup(b2b: B2B, vendor: VendorHandle, iccid: str, wait: int = 30) -> dict[str, Any]:
    response = await b2b.api.post(
        f"/api/v1/vendor/esims/{iccid}/topups",
        params={"wait": wait},
        json={"bundle_code": BUNDLE},  # the very bundle the eSIM was sold with
        headers={**vendor.headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert response.status_code in (201, 202), response.text
    return dict(response.json())


async def _until_completed(b2b: B2B, vendor: VendorHandle, order_id: str) -> dict[str, Any]:
    async with asyncio.timeout(60):
        while True:
            body = (await b2b.api.get(f"/api/v1/vendor/orders/{order_id}", headers=vendor.headers)).json()
            if body["status"] in ("COMPLETED", "FAILED", "NEEDS_ATTENTION"):
                return dict(body)
            await asyncio.sleep(0.2)


def _assignments(b2b: B2B, iccid: str) -> list[dict[str, Any]]:
    """The eSIM's assignments of BUNDLE at the simulator, oldest first (ids, references, states)."""
    response = httpx.get(f"{b2b.sim.api_url}/esims/{iccid}/bundles", headers={"X-API-Key": SIM_API_KEY})
    response.raise_for_status()
    [named] = [b for b in response.json()["bundles"] if b["name"] == BUNDLE]
    return sorted(named["assignments"], key=lambda a: a["assignmentDateTime"])


def _set_state(b2b: B2B, iccid: str, assignment: dict[str, Any], state: str) -> None:
    b2b.sim.admin.put(
        f"/esims/{iccid}/assignments/{assignment['id']}", json={"bundle_state": state}
    ).raise_for_status()


async def _release(b2b: B2B, order_id: str) -> int:
    client = b2b.sim.client()
    try:
        return await SupplierActivities(client, b2b.sessions).release_order(uuid.UUID(order_id))
    finally:
        await client.aclose()


@pytest.mark.parametrize("b2b", [LATE_COMMITS], indirect=True)
async def test_an_in_doubt_topup_is_adopted_not_bought_again(b2b: B2B) -> None:
    vendor = await b2b.new_vendor(balance=100_000)
    iccid = await _esim(b2b, vendor)
    # eSIM Go hangs past our 1 s timeout, then applies the top-up all the same.
    b2b.sim.faults(**{"POST /orders": {"timeout_rate": 1.0, "timeout_s": 3, "timeout_commits": True}})
    topup = await _topup(b2b, vendor, iccid, wait=0)
    async with asyncio.timeout(30):
        while b2b.sim.stats()["requests"].get("POST /orders", 0) < 2:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    b2b.sim.faults()

    body = await _until_completed(b2b, vendor, topup["id"])

    assert body["status"] == "COMPLETED", body
    stats = b2b.sim.stats()
    assert stats["orders"]["transactions"] == 2, "the top-up was bought twice"
    assert stats["requests"]["POST /orders"] == 2
    assert [a["bundleState"] for a in _assignments(b2b, iccid)] == ["queued", "queued"]


async def test_an_order_of_new_esims_never_adopts_a_topup(b2b: B2B) -> None:
    vendor = await b2b.new_vendor(balance=100_000)
    iccid = await _esim(b2b, vendor)
    async with b2b.sessions() as session:
        sold = await session.scalar(
            select(Order).join(Esim, Esim.order_id == Order.id).where(Esim.iccid == iccid)
        )
    assert sold is not None
    sent_at = datetime.now(UTC)
    client = b2b.sim.client()
    try:
        # A top-up of that eSIM nobody recorded (its own order's answer was lost), of the same bundle.
        orphan = await client.create_order(BUNDLE, 1, iccids=[iccid])
        waiting = uuid.uuid4()
        async with b2b.sessions() as session, session.begin():
            session.add(
                Order(
                    id=waiting,
                    channel=Channel.B2B,
                    status=OrderStatus.PROVISIONING,
                    vendor_id=sold.vendor_id,
                    bundle_code=BUNDLE,
                    quantity=1,
                    unit_price_minor=sold.unit_price_minor,
                    total_minor=sold.unit_price_minor,
                    currency=sold.currency,
                    workflow_id=f"order-{waiting}",
                    supplier_call_sent_at=sent_at,
                )
            )
        order = OrderInput(
            order_id=waiting,
            workflow_id=f"order-{waiting}",
            channel=Channel.B2B,
            vendor_id=sold.vendor_id,
            bundle_code=BUNDLE,
            quantity=1,
            unit_price_minor=sold.unit_price_minor,
            currency=sold.currency,
            wholesale_unit_minor=0,
            supplier_task_queue="unused",
            supplier_retry_budget_s=60,
            payment_window_s=60,
        )
        # Its call is in doubt and may be looked for at once: the top-up is no answer, so it buys anew.
        supplier = SupplierActivities(client, b2b.sessions, commit_delay=timedelta(0))
        bought = await ActivityEnvironment().run(supplier.place_order, order)
    finally:
        await client.aclose()
    assert bought.reference != orphan.reference
    assert iccid not in {e.iccid for e in bought.esims}
    async with b2b.sessions() as session:
        holder = await session.scalar(
            select(Order.id).where(Order.supplier_order_reference == orphan.reference)
        )
    assert holder is None


async def test_a_topup_is_revoked_when_the_sold_bundle_of_its_name_has_expired(b2b: B2B) -> None:
    vendor = await b2b.new_vendor(balance=100_000)
    iccid = await _esim(b2b, vendor)
    topup = await _topup(b2b, vendor, iccid)
    assert topup["status"] == "COMPLETED", topup
    sold, bought = _assignments(b2b, iccid)
    _set_state(b2b, iccid, sold, "expired")  # the 7 days of the bundle sold with the eSIM are over

    assert await _release(b2b, topup["id"]) == 1

    states = {a["assignmentReference"]: a["bundleState"] for a in _assignments(b2b, iccid)}
    assert states == {sold["assignmentReference"]: "expired", bought["assignmentReference"]: "revoked"}
    async with b2b.sessions() as session:
        row = await session.scalar(select(EsimBundle).where(EsimBundle.order_id == uuid.UUID(topup["id"])))
    assert row is not None and (row.reference, row.state) == (bought["assignmentReference"], "revoked")
    assert await _release(b2b, topup["id"]) == 0, "a retry revokes nothing twice"
    assert {a["bundleState"] for a in _assignments(b2b, iccid)} == {"expired", "revoked"}


async def test_giving_a_topup_back_never_takes_the_sold_bundle(b2b: B2B) -> None:
    vendor = await b2b.new_vendor(balance=100_000)
    iccid = await _esim(b2b, vendor)
    topup = await _topup(b2b, vendor, iccid)
    _, bought = _assignments(b2b, iccid)
    _set_state(b2b, iccid, bought, "active")  # the top-up's bundle is in use, the sold one not yet

    # eSIM Go revokes by name, its oldest unused assignment first: that is the sold bundle, not ours.
    assert await _release(b2b, topup["id"]) == 0
    assert [a["bundleState"] for a in _assignments(b2b, iccid)] == ["queued", "active"]


async def test_a_report_of_the_topup_assignment_takes_the_topup_row(b2b: B2B) -> None:
    vendor = await b2b.new_vendor(balance=100_000)
    iccid = await _esim(b2b, vendor)
    topup = await _topup(b2b, vendor, iccid)
    _, bought = _assignments(b2b, iccid)
    report = BundleReport(
        name=BUNDLE,
        reference=bought["assignmentReference"],
        initial_bytes=bought["initialQuantity"],
        remaining_bytes=bought["remainingQuantity"],
        state=bought["bundleState"],
        assigned_at=datetime.fromisoformat(bought["assignmentDateTime"].replace("Z", "+00:00")),
    )
    async with b2b.sessions() as session, session.begin():
        esim = await lock_esim(session, iccid)
        assert esim is not None
        await ensure_sold_bundles(session, esim)
        # eSIM Go lists the top-up first here: it must not take over the sold bundle's row.
        bundle = await apply_report(session, esim, report)
        assert bundle.order_id == uuid.UUID(topup["id"])
    async with b2b.sessions() as session:
        rows = list(await session.scalars(select(EsimBundle).where(EsimBundle.esim_id == esim.id)))
    sold_row = next(r for r in rows if r.order_id != uuid.UUID(topup["id"]))
    assert len(rows) == 2 and sold_row.reference is None


async def test_admin_order_lists_filter_by_kind(b2b: B2B) -> None:
    vendor = await b2b.new_vendor(balance=100_000)
    iccid = await _esim(b2b, vendor)
    topup = await _topup(b2b, vendor, iccid)
    listed = {}
    for kind in ("TOPUP", "ORDER"):
        response = await b2b.api.get(
            "/api/v1/admin/orders", params={"kind": kind, "vendor_id": vendor.id}, headers=b2b.admin
        )
        assert response.status_code == 200, response.text
        listed[kind] = [(o["id"], o["kind"]) for o in response.json()["items"]]
    assert listed["TOPUP"] == [(topup["id"], "TOPUP")]
    assert len(listed["ORDER"]) == 1 and listed["ORDER"][0][1] == "ORDER"
    bad = await b2b.api.get("/api/v1/admin/orders", params={"kind": "GIFT"}, headers=b2b.admin)
    assert bad.status_code == 422
