"""The vendor API usage log: every call by a vendor's key or team member is written (in batches, off the
request path) and reported by day and endpoint to the vendor and to admins."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from api.usage import UsageRecorder
from tests.b2b.conftest import B2B
from ttelgo.db import create_engine, session_factory
from ttelgo.models import ApiUsageLog


async def _usage_rows(b2b: B2B, expected: int) -> list[ApiUsageLog]:
    async with asyncio.timeout(20):  # the writer flushes every couple of seconds
        while True:
            async with b2b.sessions() as session:
                rows = (await session.scalars(select(ApiUsageLog).order_by(ApiUsageLog.id))).all()
            if len(rows) >= expected:
                return list(rows)
            await asyncio.sleep(0.2)


async def test_vendor_calls_are_logged_and_reported_by_endpoint_and_day(b2b: B2B) -> None:
    vendor = await b2b.new_vendor()
    other = await b2b.new_vendor()
    for _ in range(3):
        assert (await b2b.api.get("/api/v1/vendor/wallet", headers=vendor.headers)).status_code == 200
    for _ in range(2):
        missing = await b2b.api.get(f"/api/v1/vendor/orders/{uuid.uuid4()}", headers=vendor.headers)
        assert missing.status_code == 404
    # Not a vendor's authenticated call: nothing to log.
    await b2b.api.get("/api/v1/vendor/wallet", headers={"X-API-Key": "ttg_000000000000_wrong"})
    await b2b.api.get("/api/v1/catalogue")
    await b2b.api.get("/api/v1/admin/vendors", headers=b2b.admin)

    rows = await _usage_rows(b2b, 5)
    assert len(rows) == 5
    assert {(r.vendor_id, r.api_key_id) for r in rows} == {(uuid.UUID(vendor.id), uuid.UUID(vendor.key_id))}
    assert [r.path for r in rows] == ["/api/v1/vendor/wallet"] * 3 + ["/api/v1/vendor/orders/{order_id}"] * 2
    assert all(r.request_id and r.duration_ms >= 0 and r.method == "GET" for r in rows)

    report = await b2b.api.get("/api/v1/vendor/usage", headers=vendor.headers)
    assert report.status_code == 200, report.text
    body = report.json()
    today = datetime.now(UTC).date()
    assert body["from"] == str(today - timedelta(days=6)) and body["to"] == str(today)
    by_endpoint = {item["endpoint"]: item for item in body["items"]}
    wallet = by_endpoint["/api/v1/vendor/wallet"]
    orders = by_endpoint["/api/v1/vendor/orders/{order_id}"]
    assert (wallet["requests"], wallet["errors"], wallet["day"]) == (3, 0, str(today))
    assert (orders["requests"], orders["errors"], orders["client_errors"], orders["server_errors"]) == (
        2,
        2,
        2,
        0,
    )
    durations = sorted(r.duration_ms for r in rows[:3])
    assert wallet["avg_latency_ms"] == round(sum(durations) / 3, 1)
    assert durations[1] <= wallet["p95_latency_ms"] <= durations[2]

    # The report call itself is logged after it answered, and appears next time.
    admin_view = await b2b.api.get(f"/api/v1/admin/vendors/{vendor.id}/usage", headers=b2b.admin)
    assert admin_view.status_code == 200
    assert {i["endpoint"] for i in admin_view.json()["items"]} >= set(by_endpoint)
    others = await b2b.api.get("/api/v1/vendor/usage", headers=other.headers)
    assert [i["endpoint"] for i in others.json()["items"]] == []
    yesterday = await b2b.api.get(
        "/api/v1/vendor/usage",
        params={"from": str(today - timedelta(days=3)), "to": str(today - timedelta(days=1))},
        headers=vendor.headers,
    )
    assert yesterday.json()["items"] == []


async def test_bad_report_windows_and_unknown_vendors_are_refused(b2b: B2B) -> None:
    vendor = await b2b.new_vendor()
    today = datetime.now(UTC).date()
    for params in (
        {"from": str(today), "to": str(today - timedelta(days=1))},
        {"from": str(today - timedelta(days=200)), "to": str(today)},
        {"from": "yesterday"},
    ):
        refused = await b2b.api.get("/api/v1/vendor/usage", params=params, headers=vendor.headers)
        assert refused.status_code == 422, (params, refused.text)
    unknown = await b2b.api.get(f"/api/v1/admin/vendors/{uuid.uuid4()}/usage", headers=b2b.admin)
    assert unknown.status_code == 404
    assert (await b2b.api.get("/api/v1/vendor/usage")).status_code == 401
    assert (
        await b2b.api.get(f"/api/v1/admin/vendors/{vendor.id}/usage", headers=vendor.headers)
    ).status_code in (401, 403)


async def test_a_failed_usage_write_is_logged_and_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    engine = create_engine("postgresql://nobody@127.0.0.1:1/none")
    recorder = UsageRecorder(session_factory(engine), flush_interval_s=3600)
    try:
        recorder.record(
            vendor_id=uuid.uuid4(),
            api_key_id=None,
            method="GET",
            path="/x",
            status_code=200,
            duration_ms=1,
            request_id=None,
            created_at=datetime.now(UTC),
        )
        await recorder.close()  # flushes: the write fails, and is only logged
    finally:
        await engine.dispose()
    assert any(
        r.levelname == "WARNING" and "dropped 1 API usage rows" in r.getMessage() for r in caplog.records
    )


async def test_usage_rows_written_in_batches_count_every_call(b2b: B2B) -> None:
    vendor = await b2b.new_vendor()
    await asyncio.gather(*(b2b.api.get("/api/v1/vendor/wallet", headers=vendor.headers) for _ in range(60)))
    await _usage_rows(b2b, 60)
    async with b2b.sessions() as session:
        count = await session.scalar(select(func.count()).select_from(ApiUsageLog))
    assert count == 60
