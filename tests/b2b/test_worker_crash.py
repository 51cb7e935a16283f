"""A worker killed with SIGKILL mid-provisioning: the order still completes, with one supplier order and
one posted debit."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.b2b.conftest import B2B
from ttelgo.models import Transfer, TransferKind
from ttelgo.sandbox.processes import ManagedProcess, free_port
from workflows.catalogue_sync import SCHEDULE_ID
from workflows.reconciliation import SCHEDULE_ID as RECONCILIATION_SCHEDULE_ID

ROOT = Path(__file__).resolve().parents[2]


def _worker(b2b: B2B, log: Path) -> ManagedProcess:
    env = {
        **os.environ,
        **b2b.settings.service_env(),
        "WORKER_METRICS_PORT": str(free_port()),
        "CATALOGUE_SYNC_MINUTES": "60",
    }
    return ManagedProcess("worker", [sys.executable, "worker.py"], log, env, ROOT).start()


async def _wait_for(predicate: Callable[[], Awaitable[bool]]) -> None:
    while not await predicate():  # noqa: ASYNC110 - polling other processes, nothing to wait on here
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("b2b", [{"worker": False}], indirect=True)
async def test_sigkill_mid_provisioning_then_restart(b2b: B2B, tmp_path: Path) -> None:
    first = _worker(b2b, tmp_path / "worker-1.log")
    second: ManagedProcess | None = None
    try:
        vendor = await b2b.new_vendor(balance=10_000)
        b2b.sim.faults(**{"POST /orders": {"latency_ms": 2500}})
        response = await b2b.order(vendor, wait=0)
        assert response.status_code == 202, response.text
        order_id = response.json()["id"]

        async def supplier_called() -> bool:
            return b2b.sim.stats()["requests"].get("POST /orders", 0) >= 1

        async with asyncio.timeout(60):
            await _wait_for(supplier_called)
        os.kill(first.pid, signal.SIGKILL)  # mid-call: the supplier answers after the worker is gone
        first.stop()
        second = _worker(b2b, tmp_path / "worker-2.log")

        async def completed() -> bool:
            polled = await b2b.api.get(f"/api/v1/vendor/orders/{order_id}", headers=vendor.headers)
            return polled.json()["status"] == "COMPLETED"

        async with asyncio.timeout(90):
            await _wait_for(completed)
    finally:
        for worker in (first, second):
            if worker:
                worker.stop()
        for schedule in (SCHEDULE_ID, RECONCILIATION_SCHEDULE_ID):  # the worker process made both
            await b2b.temporal.get_schedule_handle(schedule).delete()

    assert b2b.sim.stats()["orders"]["transactions"] == 1, "the supplier was charged twice"
    async with b2b.sessions() as session:
        posts = list(
            await session.scalars(
                select(Transfer).where(
                    Transfer.order_id == uuid.UUID(order_id), Transfer.kind == TransferKind.POST_PENDING
                )
            )
        )
    assert len(posts) == 1
    esims = (await b2b.api.get(f"/api/v1/vendor/orders/{order_id}/esims", headers=vendor.headers)).json()
    assert len(esims) == 1
