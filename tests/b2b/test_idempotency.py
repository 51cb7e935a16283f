"""The Idempotency-Key matrix on a creating POST (vendor orders)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from sqlalchemy import func, select

from tests.b2b.conftest import B2B
from tests.support.stack import api_client
from ttelgo.models import IdempotencyRecord, Order
from ttelgo.sandbox.processes import free_port


async def _orders(b2b: B2B) -> int:
    async with b2b.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Order)) or 0)


async def test_missing_key_is_400(b2b: B2B) -> None:
    vendor = await b2b.new_vendor(balance=10_000)
    response = await b2b.api.post(
        "/api/v1/vendor/orders",
        json={"bundle_code": "esim_1GB_7D_FR_V2", "quantity": 1},
        headers=vendor.headers,
    )
    assert response.status_code == 400 and response.json()["code"] == "IDEMPOTENCY_KEY_MISSING"
    assert await _orders(b2b) == 0


async def test_same_key_same_body_replays_byte_for_byte(b2b: B2B) -> None:
    vendor = await b2b.new_vendor(balance=10_000)
    key = str(uuid.uuid4())
    first = await b2b.order(vendor, key=key)
    # Same content with keys in another order: still the same request.
    again = await b2b.api.post(
        "/api/v1/vendor/orders",
        params={"wait": 15},
        content=b'{"quantity": 1, "bundle_code": "esim_1GB_7D_FR_V2"}',
        headers={**vendor.headers, "Idempotency-Key": key, "content-type": "application/json"},
    )
    assert first.status_code == again.status_code == 201
    assert again.content == first.content
    assert (
        again.headers["Idempotent-Replayed"] == "true"
        and again.headers["Location"] == first.headers["Location"]
    )
    assert await _orders(b2b) == 1 and b2b.sim.stats()["orders"]["transactions"] == 1
    async with b2b.sessions() as session:
        record = await session.scalar(select(IdempotencyRecord).where(IdempotencyRecord.key == key))
    assert record is not None and record.expires_at - record.created_at >= timedelta(hours=24)


async def test_same_key_other_body_is_422(b2b: B2B) -> None:
    vendor = await b2b.new_vendor(balance=10_000)
    key = str(uuid.uuid4())
    assert (await b2b.order(vendor, key=key)).status_code == 201
    other = await b2b.order(vendor, key=key, quantity=2)
    assert other.status_code == 422 and other.json()["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert await _orders(b2b) == 1


async def test_same_key_while_the_first_runs_is_409(b2b: B2B) -> None:
    vendor = await b2b.new_vendor(balance=10_000)
    b2b.sim.faults(**{"POST /orders": {"latency_ms": 2000}})
    key = str(uuid.uuid4())
    first = asyncio.create_task(b2b.order(vendor, key=key, wait=10))
    await asyncio.sleep(0.5)
    second = await b2b.order(vendor, key=key, wait=10)
    assert second.status_code == 409 and second.json()["code"] == "IDEMPOTENCY_REQUEST_IN_PROGRESS"
    assert (await first).status_code == 201
    assert b2b.sim.stats()["orders"]["transactions"] == 1


async def test_keys_are_scoped_to_the_caller(b2b: B2B) -> None:
    a, b = await b2b.new_vendor(balance=10_000), await b2b.new_vendor(balance=10_000)
    key = str(uuid.uuid4())
    first, second = await b2b.order(a, key=key), await b2b.order(b, key=key)
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] != second.json()["id"]


async def test_a_business_refusal_is_replayed_too(b2b: B2B) -> None:
    vendor = await b2b.new_vendor(balance=1)
    key = str(uuid.uuid4())
    refused = await b2b.order(vendor, key=key)
    assert refused.status_code == 402, refused.text
    await b2b.adjust(vendor.id, 10_000)
    replay = await b2b.order(vendor, key=key)
    assert replay.status_code == 402 and replay.content == refused.content


async def test_a_transient_failure_is_not_replayed(b2b: B2B) -> None:
    vendor = await b2b.new_vendor(balance=10_000)
    key = str(uuid.uuid4())
    temporal_down = b2b.settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})
    async with api_client(temporal_down) as api:
        outage = await api.post(
            "/api/v1/vendor/orders",
            json={"bundle_code": "esim_1GB_7D_FR_V2", "quantity": 1},
            headers={**vendor.headers, "Idempotency-Key": key},
        )
    assert outage.status_code == 503 and outage.json()["code"] == "SERVICE_UNAVAILABLE"
    retried = await b2b.order(vendor, key=key)
    assert retried.status_code == 201 and "Idempotent-Replayed" not in retried.headers
    assert b2b.sim.stats()["orders"]["transactions"] == 1
