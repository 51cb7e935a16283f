"""A worker killed with SIGKILL mid-provisioning: the order still completes, with one supplier order and
one posted debit."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.b2b.conftest import B2B
from tests.support.stack import stop_worker_processes, wait_for, worker_process
from ttelgo.models import Transfer, TransferKind
from ttelgo.sandbox.processes import ManagedProcess


@pytest.mark.parametrize("b2b", [{"worker": False}], indirect=True)
async def test_sigkill_mid_provisioning_then_restart(b2b: B2B, tmp_path: Path) -> None:
    first = worker_process(b2b.settings, tmp_path / "worker-1.log")
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
            await wait_for(supplier_called)
        os.kill(first.pid, signal.SIGKILL)  # mid-call: the supplier answers after the worker is gone
        first.stop()
        second = worker_process(b2b.settings, tmp_path / "worker-2.log")

        async def completed() -> bool:
            polled = await b2b.api.get(f"/api/v1/vendor/orders/{order_id}", headers=vendor.headers)
            return polled.json()["status"] == "COMPLETED"

        async with asyncio.timeout(90):
            await wait_for(completed)
    finally:
        await stop_worker_processes(b2b.temporal, first, second)

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
