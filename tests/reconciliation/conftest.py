"""A world for reconciliation: the B2C stack (localstripe sending webhooks to a real API port, the worker,
the eSIM Go simulator) with no grace period, so a discrepancy made a moment ago counts at once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from tests.b2c.conftest import B2C, STRIPE_KEY, WEBHOOK_SECRET, localstripe  # noqa: F401 (fixture)
from tests.support.esimgo import SimHandle
from tests.support.stack import running_worker, stack_settings
from ttelgo.db import session_factory
from ttelgo.models import AuditLog, Channel, Order, OrderKind, OrderStatus
from ttelgo.payments import StripeGateway
from ttelgo.sandbox.threaded_server import serve_in_thread

BUNDLE = "esim_1GB_7D_FR_V2"
RUNS = "/api/v1/admin/reconciliation/runs"


@dataclass
class Recon:
    world: B2C
    localstripe: str
    workflows: list[str] = field(default_factory=list)
    idle_workflows: list[str] = field(default_factory=list)  # started by tests, moved by no worker

    @property
    def api(self) -> httpx.AsyncClient:
        return self.world.api

    @property
    def sim(self) -> SimHandle:
        return self.world.sim

    async def run(self, **body: Any) -> dict[str, Any]:
        """Starts a run through the API and waits for it to finish; answers its detail."""
        admin = await self.world.admin()
        started = await self.api.post(
            RUNS, json=body or None, headers={**admin, "Idempotency-Key": str(uuid.uuid4())}
        )
        assert started.status_code == 202, started.text
        self.workflows.append(started.json()["workflow_id"])
        return await self.finished(started.json()["id"])

    async def finished(self, run_id: str, within_s: float = 60) -> dict[str, Any]:
        admin = await self.world.admin()
        deadline = time.monotonic() + within_s
        while True:
            detail = (await self.api.get(f"{RUNS}/{run_id}", headers=admin)).json()
            if detail.get("status") in ("COMPLETED", "FAILED"):
                return detail
            assert time.monotonic() < deadline, f"run {run_id} still {detail}"
            await asyncio.sleep(0.2)

    def balance(self) -> float:
        return float(self.sim.admin.get("/organisation/balance").json()["balance"])

    async def vendor_order_waiting_for_supplier(
        self,
        *,
        quantity: int = 1,
        status: OrderStatus = OrderStatus.PROVISIONING,
        call_sent_at: datetime | None = None,
        workflow: bool = False,
        topup_of: str | None = None,
    ) -> uuid.UUID:
        """An order of ours in PROVISIONING (or `status`) with no supplier reference, written as such. With
        no workflow behind it (it gave up or died after the supplier call went out), unless `workflow`:
        then a workflow of its id runs, one that no worker ever moves (running as far as Temporal can
        tell, which is all reconciliation asks); the test's teardown terminates it. With `topup_of` (an
        ICCID), a top-up of that eSIM."""
        vendor = await (await self.world.wallet_world()).new_vendor(balance=100_000)
        order_id = uuid.uuid4()
        async with self.world.sessions() as session, session.begin():
            session.add(
                Order(
                    id=order_id,
                    channel=Channel.B2B,
                    vendor_id=uuid.UUID(vendor.id),
                    status=status,
                    bundle_code=BUNDLE,
                    quantity=quantity,
                    unit_price_minor=500,
                    total_minor=500 * quantity,
                    currency="USD",
                    workflow_id=f"order-{order_id}",
                    supplier_call_sent_at=call_sent_at,
                    kind=OrderKind.TOPUP if topup_of else OrderKind.ORDER,
                    target_iccid=topup_of,
                )
            )
        if workflow:
            await self.world.temporal.start_workflow(
                "NobodyRunsThis", id=f"order-{order_id}", task_queue=f"unpolled-{uuid.uuid4()}"
            )
            self.idle_workflows.append(f"order-{order_id}")
        return order_id

    async def wait_for_row(
        self, order_id: uuid.UUID | str, *statuses: OrderStatus, within_s: float = 30
    ) -> Order:
        deadline = time.monotonic() + within_s
        while True:
            row = await self.order_row(order_id)
            if row.status in statuses:
                return row
            assert time.monotonic() < deadline, f"order {order_id} still {row.status}, wanted {statuses}"
            await asyncio.sleep(0.2)

    async def order_row(self, order_id: uuid.UUID | str) -> Order:
        async with self.world.sessions() as session:
            order = await session.get(Order, uuid.UUID(str(order_id)))
            assert order is not None
            return order

    async def audit(self, **where: str) -> list[AuditLog]:
        async with self.world.sessions() as session:
            query = select(AuditLog).order_by(AuditLog.id)
            for column, value in where.items():
                query = query.where(getattr(AuditLog, column) == value)
            return list(await session.scalars(query))


@pytest.fixture
async def recon(
    synced_database_url: str,
    temporal_env: WorkflowEnvironment,
    esimgo_sim: SimHandle,
    task_queue: str,
    localstripe: str,  # noqa: F811
) -> AsyncIterator[Recon]:
    settings = stack_settings(
        synced_database_url,
        temporal_env.client,
        esimgo_sim,
        task_queue,
        stripe_secret_key=STRIPE_KEY,
        stripe_api_base=localstripe,
        stripe_webhook_secret=WEBHOOK_SECRET,
        reconciliation_grace_minutes=0,
        reconciliation_window_minutes=60,
    )
    engine = create_async_engine(synced_database_url, pool_size=10)
    gateway = StripeGateway(STRIPE_KEY, localstripe)
    try:
        with serve_in_thread(create_app(settings)) as api_base:
            async with httpx.AsyncClient() as http:
                registered = await http.post(
                    f"{localstripe}/_config/webhooks/ttelgo",
                    data={"url": f"{api_base}/api/v1/webhooks/stripe", "secret": WEBHOOK_SECRET},
                    auth=(STRIPE_KEY, ""),
                )
                registered.raise_for_status()
            async with (
                running_worker(settings, temporal_env.client),
                httpx.AsyncClient(base_url=api_base, timeout=30) as api,
            ):
                world = B2C(
                    api, settings, session_factory(engine), temporal_env.client, esimgo_sim, gateway, api_base
                )
                recon = Recon(world, localstripe)
                try:
                    yield recon
                finally:
                    for workflow_id in recon.idle_workflows:
                        with contextlib.suppress(Exception):
                            await world.temporal.get_workflow_handle(workflow_id).terminate("test over")
                assert await world.invariants() == [], "ledger or order invariants broken by this test"
                await _record_histories(recon)
    finally:
        await gateway.aclose()
        await engine.dispose()


async def _record_histories(recon: Recon) -> None:
    """With TTELGO_RECORD_HISTORIES=<name>, the test's runs become replay fixtures
    `reconciliation_<name>[_<n>].json` in tests/histories."""
    name = os.environ.get("TTELGO_RECORD_HISTORIES")
    for n, workflow_id in enumerate(recon.workflows if name else [], start=1):
        history = await recon.world.temporal.get_workflow_handle(workflow_id).fetch_history()
        suffix = f"_{n}" if n > 1 else ""
        (Path(__file__).parents[1] / "histories" / f"reconciliation_{name}{suffix}.json").write_text(
            history.to_json()
        )
