"""A B2B world per test: synced catalogue, the worker, the API, an admin, and a way to make vendors."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from tests.support.esimgo import SimHandle
from tests.support.stack import api_client, running_worker, stack_settings
from ttelgo import ledger
from ttelgo.admins import ensure_admin
from ttelgo.db import session_factory
from ttelgo.order_invariants import check_order_invariants
from ttelgo.settings import Settings

ADMIN_EMAIL, ADMIN_PASSWORD = "root@example.com", "correct horse battery staple"
BUNDLE = "esim_1GB_7D_FR_V2"


@dataclass
class VendorHandle:
    id: str
    key: str
    key_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.key}


@dataclass
class B2B:
    api: httpx.AsyncClient
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    temporal: Client
    sim: SimHandle
    admin: dict[str, str] = field(default_factory=dict)

    async def new_vendor(
        self,
        *,
        balance: int = 0,
        billing_mode: str = "PREPAID",
        credit_limit: int = 0,
        approve: bool = True,
        markup_bps: int | None = 0,
    ) -> VendorHandle:
        body = {
            "name": "Roam Shop",
            "contact_email": f"{uuid.uuid4().hex[:10]}@example.com",
            "billing_mode": billing_mode,
            "credit_limit_minor": credit_limit,
            "markup_bps": markup_bps,
        }
        created = await self.api.post(
            "/api/v1/admin/vendors", json=body, headers={**self.admin, "Idempotency-Key": str(uuid.uuid4())}
        )
        assert created.status_code == 201, created.text
        vendor_id = created.json()["id"]
        if approve:
            assert (
                await self.api.post(f"/api/v1/admin/vendors/{vendor_id}/approve", headers=self.admin)
            ).is_success
        key = await self.api.post(
            f"/api/v1/admin/vendors/{vendor_id}/api-keys", json={"name": "ci"}, headers=self.admin
        )
        assert key.status_code == 201, key.text
        if balance:
            await self.adjust(vendor_id, balance)
        return VendorHandle(vendor_id, key.json()["key"], key.json()["id"])

    async def adjust(self, vendor_id: str, amount: int) -> httpx.Response:
        response = await self.api.post(
            f"/api/v1/admin/vendors/{vendor_id}/adjust-balance",
            json={"amount_minor": amount, "reason": "test funding"},
            headers={**self.admin, "Idempotency-Key": str(uuid.uuid4())},
        )
        assert response.status_code == 200, response.text
        return response

    async def order(
        self,
        vendor: VendorHandle,
        *,
        bundle: str = BUNDLE,
        quantity: int = 1,
        wait: int = 15,
        key: str | None = None,
        **extra: Any,
    ) -> httpx.Response:
        return await self.api.post(
            "/api/v1/vendor/orders",
            params={"wait": wait},
            json={"bundle_code": bundle, "quantity": quantity, **extra},
            headers={**vendor.headers, "Idempotency-Key": key or str(uuid.uuid4())},
        )

    async def wholesale(self, bundle: str = BUNDLE) -> int:
        """What eSIM Go charges us for one (a vendor with markup 0 pays this)."""
        client = self.sim.client()
        try:
            return (await client.get_bundle(bundle)).price_minor
        finally:
            await client.aclose()

    async def wallet(self, vendor: VendorHandle) -> dict[str, int]:
        response = await self.api.get("/api/v1/vendor/wallet", headers=vendor.headers)
        assert response.status_code == 200, response.text
        return response.json()

    async def invariants(self) -> list[str]:
        async with self.sessions() as session:
            return await ledger.check_invariants(session) + await check_order_invariants(session)


@pytest.fixture
async def b2b(
    request: pytest.FixtureRequest,
    synced_database_url: str,
    temporal_env: WorkflowEnvironment,
    esimgo_sim: SimHandle,
    task_queue: str,
) -> AsyncIterator[B2B]:
    """Parametrize indirectly with {"worker": False} to run the worker yourself (e.g. as a process), or
    {"settings": {...}} to change settings."""
    params = getattr(request, "param", {})
    in_process_worker = params.get("worker", True)
    settings = stack_settings(
        synced_database_url, temporal_env.client, esimgo_sim, task_queue, **params.get("settings", {})
    )
    engine = create_async_engine(synced_database_url, pool_size=20, max_overflow=20)
    sessions = session_factory(engine)
    async with sessions() as session:
        await ensure_admin(session, ADMIN_EMAIL, ADMIN_PASSWORD)
    try:
        worker = (
            running_worker(settings, temporal_env.client) if in_process_worker else contextlib.nullcontext()
        )
        async with worker, api_client(settings) as api:
            login = await api.post(
                "/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
            )
            assert login.status_code == 200, login.text
            world = B2B(
                api,
                settings,
                sessions,
                temporal_env.client,
                esimgo_sim,
                {"Authorization": f"Bearer {login.json()['access_token']}"},
            )
            yield world
            assert await world.invariants() == [], "ledger or order invariants broken by this test"
    finally:
        await engine.dispose()
