"""Freshness: a read whose copy is older than ESIM_FRESHNESS_SECONDS reads eSIM Go again, a burst of reads
of one ICCID costs the supplier one read, and with the supplier down the stored copy answers, marked stale."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import func, select, update

from tests.b2c.conftest import B2C
from tests.esims.conftest import record_history, vendor_esim
from ttelgo.models import Esim
from workflows.esim_refresh import refresh_workflow_id

ESIM_READS = ("GET /esims/{iccid}", "GET /esims/{iccid}/bundles")


async def _age(b2c: B2C, iccid: str, seconds: int) -> None:
    """The stored copy as if it had been read from eSIM Go `seconds` ago."""
    async with b2c.sessions() as session, session.begin():
        await session.execute(
            update(Esim)
            .where(Esim.iccid == iccid)
            .values(refreshed_at=func.now() - timedelta(seconds=seconds))
        )


async def _refresh_id(b2c: B2C, iccid: str) -> str:
    async with b2c.sessions() as session:
        esim_id = await session.scalar(select(Esim.id).where(Esim.iccid == iccid))
    assert esim_id is not None
    return refresh_workflow_id(esim_id)


def _supplier_reads(b2c: B2C) -> list[int]:
    requests = b2c.sim.stats()["requests"]
    return [requests.get(key, 0) for key in ESIM_READS]


async def test_a_stale_copy_is_read_again_and_shows_simulated_usage(b2c: B2C) -> None:
    _, vendor, order = await vendor_esim(b2c)
    [esim] = order["esims"]
    path = f"/api/v1/vendor/esims/{esim['iccid']}"
    first = (await b2c.api.get(path, headers=vendor.headers)).json()
    assert first["bundles"][0]["data_used_percent"] == 0.0

    used = b2c.sim.admin.post(f"/esims/{esim['iccid']}/usage", json={"bytes": 850_000_000})
    assert used.status_code == 200, used.text  # no callback URL: only a read of eSIM Go can learn it
    fresh = (await b2c.api.get(path, headers=vendor.headers)).json()
    assert fresh["bundles"][0]["data_used_percent"] == 0.0, "within the freshness window: the stored copy"

    await _age(b2c, esim["iccid"], b2c.settings.esim_freshness_seconds + 1)
    view = (await b2c.api.get(path, headers=vendor.headers)).json()
    [bundle] = view["bundles"]
    assert bundle["data_used_percent"] == 85.0 and bundle["data_remaining_percent"] == 15.0
    assert bundle["data_used_mb"] == 850 and bundle["data_remaining_mb"] == 150
    assert bundle["state"] == "active" and view["profile_status"] == "installed"
    assert view["stale"] is False and view["refreshed_age_s"] <= 1
    # Workflow ids are not encoded: the run is named by the eSIM's row id, never by its ICCID.
    workflow_id = await _refresh_id(b2c, esim["iccid"])
    assert esim["iccid"] not in workflow_id
    assert (await b2c.temporal.get_workflow_handle(workflow_id).describe()).id == workflow_id
    await record_history(b2c, workflow_id, "esim_refresh")


async def test_a_burst_of_100_reads_costs_one_supplier_read(b2c: B2C) -> None:
    _, vendor, order = await vendor_esim(b2c)
    [esim] = order["esims"]
    path = f"/api/v1/vendor/esims/{esim['iccid']}"
    b2c.sim.admin.delete("/stats").raise_for_status()

    answers = await asyncio.gather(*(b2c.api.get(path, headers=vendor.headers) for _ in range(100)))
    assert [a.status_code for a in answers] == [200] * 100
    assert all(a.json()["stale"] is False for a in answers)
    # Every reader found the copy stale (never read); they attached to one refresh, and any started
    # after it finished found the copy fresh without calling eSIM Go.
    assert _supplier_reads(b2c) == [1, 1]

    again = await asyncio.gather(*(b2c.api.get(path, headers=vendor.headers) for _ in range(100)))
    assert all(a.status_code == 200 for a in again)
    assert _supplier_reads(b2c) == [1, 1], "within the freshness window nothing is read again"


async def test_with_the_supplier_down_the_stored_copy_answers_with_its_age(b2c: B2C) -> None:
    customer = await b2c.customer()
    [esim] = (await b2c.paid_order(customer))["esims"]
    path = f"/api/v1/esims/{esim['iccid']}"
    before = (await b2c.api.get(path, headers=customer.headers)).json()
    assert before["stale"] is False

    b2c.sim.down()
    await _age(b2c, esim["iccid"], 600)
    try:
        response = await b2c.api.get(path, headers=customer.headers)
    finally:  # the refresh still retries the outage: it must not outlive this test's worker
        await b2c.temporal.get_workflow_handle(await _refresh_id(b2c, esim["iccid"])).terminate()
    assert response.status_code == 200, response.text
    view = response.json()
    assert view["stale"] is True and view["refreshed_age_s"] >= 600
    assert view["bundles"] == before["bundles"] and view["install"] == before["install"]
