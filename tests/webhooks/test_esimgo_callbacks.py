"""eSIM Go usage callbacks: verified on the raw body, recorded once, applied by a workflow."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from tests.support.esimgo import SIM_API_KEY, SimHandle
from tests.support.stack import api_client, running_worker, stack_settings
from ttelgo.db import session_factory
from ttelgo.models import (
    Channel,
    Esim,
    EsimStatus,
    Order,
    OrderStatus,
    User,
    WebhookEvent,
    WebhookEventStatus,
)
from ttelgo.sandbox.threaded_server import serve_in_thread
from ttelgo.settings import Settings

URL = "/api/v1/webhooks/esimgo"
BUNDLE = "esim_1GB_7D_FR_V2"


def sign(body: bytes, key: str = SIM_API_KEY, *, hex_digest: bool = False) -> str:
    digest = hmac.new(key.encode(), body, hashlib.sha256)
    return digest.hexdigest() if hex_digest else base64.b64encode(digest.digest()).decode()


def callback(iccid: str, alert: str, remaining: int, initial: int = 1_000_000_000) -> bytes:
    return json.dumps(
        {
            "iccid": iccid,
            "alertType": alert,
            "bundle": {
                "id": "a1",
                "reference": "r1",
                "name": BUNDLE,
                "description": "1GB France",
                "initialQuantity": initial,
                "remainingQuantity": remaining,
                "startTime": "2026-11-28T10:00:00Z",
                "endTime": "2026-12-05T10:00:00Z",
                "unlimited": False,
            },
        }
    ).encode()


@dataclass
class Harness:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]

    async def add_esim(self, iccid: str) -> None:
        async with self.sessions() as session, session.begin():
            user = User(email=f"{uuid.uuid4().hex[:8]}@example.com", password_hash="x")
            session.add(user)
            await session.flush()
            order = Order(
                channel=Channel.B2C,
                status=OrderStatus.COMPLETED,
                user_id=user.id,
                bundle_code=BUNDLE,
                quantity=1,
                unit_price_minor=399,
                total_minor=399,
                currency="USD",
                workflow_id=f"order-{uuid.uuid4()}",
            )
            session.add(order)
            await session.flush()
            session.add(
                Esim(
                    order_id=order.id,
                    iccid=iccid,
                    matching_id="M-1",
                    smdp_address="rsp.sim.test",
                    bundle_name=BUNDLE,
                    data_total_bytes=1_000_000_000,
                )
            )

    async def esim(self, iccid: str) -> Esim:
        async with self.sessions() as session:
            esim = await session.scalar(select(Esim).where(Esim.iccid == iccid))
            assert esim is not None
            return esim

    async def events(self) -> list[WebhookEvent]:
        async with self.sessions() as session:
            return list(await session.scalars(select(WebhookEvent).order_by(WebhookEvent.created_at)))

    async def wait_until_processed(self, count: int) -> list[WebhookEvent]:
        for _ in range(200):
            events = await self.events()
            if len(events) >= count and all(e.processed_at for e in events):
                return events
            await asyncio.sleep(0.05)
        raise AssertionError(
            f"events not processed: {[(e.event_type, e.status) for e in await self.events()]}"
        )


@pytest.fixture
async def harness(
    database_url: str, temporal_env: WorkflowEnvironment, esimgo_sim: SimHandle, task_queue: str
) -> AsyncIterator[Harness]:
    settings = stack_settings(database_url, temporal_env.client, esimgo_sim, task_queue)
    engine = create_async_engine(database_url)
    try:
        async with running_worker(settings, temporal_env.client):
            yield Harness(settings, session_factory(engine))
    finally:
        await engine.dispose()


async def _post(h: Harness, body: bytes, headers: dict[str, str]) -> httpx.Response:
    async with api_client(h.settings) as api:
        return await api.post(URL, content=body, headers={"content-type": "application/json", **headers})


async def test_signature_is_checked_on_the_raw_body(harness: Harness) -> None:
    body = callback("8944000000000000001", "Utilisation", 500_000_000)
    for headers in (
        {},
        {"X-Signature-SHA256": sign(b"another body")},
        {"X-Signature-SHA256": sign(body, key="wrong-key")},
        {"X-Signature-SHA256": "%%%"},
    ):
        response = await _post(harness, body, headers)
        assert response.status_code == 401, headers
        assert response.json()["code"] == "CALLBACK_SIGNATURE_INVALID"
    assert await harness.events() == []

    accepted = await _post(harness, body, {"X-Signature-SHA256": sign(body, hex_digest=True)})
    assert accepted.status_code == 200 and accepted.json()["status"] == "accepted"


async def test_malformed_payload_is_400_and_stores_nothing(harness: Harness) -> None:
    for body in (b"not json", b'{"alertType": "Utilisation"}', b"[]"):
        response = await _post(harness, body, {"X-Signature-SHA256": sign(body)})
        assert response.status_code == 400 and response.json()["code"] == "WEBHOOK_PAYLOAD_INVALID"
    assert await harness.events() == []


async def test_duplicates_are_recorded_and_applied_once(harness: Harness) -> None:
    iccid = "8944000000000000019"
    await harness.add_esim(iccid)
    body = callback(iccid, "Utilisation", 200_000_000)
    answers = [await _post(harness, body, {"X-Signature-SHA256": sign(body)}) for _ in range(5)]
    assert [a.json()["status"] for a in answers] == ["accepted"] + ["duplicate"] * 4
    assert len({a.json()["event_id"] for a in answers}) == 1
    [event] = await harness.wait_until_processed(1)
    assert event.status is WebhookEventStatus.DELIVERED
    esim = await harness.esim(iccid)
    assert esim.data_remaining_bytes == 200_000_000 and esim.status is EsimStatus.INSTALLED


async def test_out_of_order_usage_never_raises_remaining_data(harness: Harness) -> None:
    iccid = "8944000000000000027"
    await harness.add_esim(iccid)
    for remaining in (200_000_000, 500_000_000):  # the 80 % alert arrives before the 50 % one
        body = callback(iccid, "Utilisation", remaining)
        assert (await _post(harness, body, {"X-Signature-SHA256": sign(body)})).status_code == 200
    await harness.wait_until_processed(2)
    assert (await harness.esim(iccid)).data_remaining_bytes == 200_000_000


async def test_unknown_iccid_is_recorded_for_operators(harness: Harness) -> None:
    body = callback("8944000000000000035", "FirstUse", 1_000_000_000)
    assert (await _post(harness, body, {"X-Signature-SHA256": sign(body)})).status_code == 200
    [event] = await harness.wait_until_processed(1)
    assert event.status is WebhookEventStatus.IGNORED and "8944000000000000035" in (event.error or "")


async def test_simulator_usage_reaches_our_esim_record(harness: Harness, esimgo_sim: SimHandle) -> None:
    """The whole loop over real HTTP: the simulator signs and sends, the API records, the worker applies."""
    client = esimgo_sim.client()
    try:
        [esim] = (await client.create_order(BUNDLE, 1)).esims
    finally:
        await client.aclose()
    await harness.add_esim(esim.iccid)
    with serve_in_thread(create_app(harness.settings)) as api_base:
        esimgo_sim.admin.put("/callback-url", json={"url": f"{api_base}{URL}"}).raise_for_status()
        usage = await asyncio.to_thread(
            esimgo_sim.admin.post, f"/esims/{esim.iccid}/usage", json={"bytes": 600_000_000}
        )
        sent = usage.json()["callbacks"]
        assert [c["status"] for c in sent] == [200] * len(sent) and len(sent) >= 3
        # Alerts whose bodies are byte-identical (1 % and 50 % crossed by one usage) are one event to us.
        log = esimgo_sim.admin.get("/callbacks").json()
        distinct = len({json.dumps(c["payload"], sort_keys=True) for c in log})
        events = await harness.wait_until_processed(distinct)
    assert {e.event_type for e in events} == {"FirstUse", "Utilisation"}
    assert all(e.status is WebhookEventStatus.DELIVERED for e in events)
    record = await harness.esim(esim.iccid)
    assert record.data_remaining_bytes == 400_000_000
    assert record.first_used_at is not None and record.status is EsimStatus.INSTALLED
    async with harness.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(WebhookEvent)) == distinct
