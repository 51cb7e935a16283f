"""A worker killed with SIGKILL in the middle of an Invoicing run: after a restart every POSTPAID vendor has
exactly one invoice for the month, numbered without gaps, with the total its ledger says."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from tests.b2b.conftest import B2B
from tests.b2b.test_invoices import PERIOD, _billed, _completed_order, _into_period, _without_gaps
from tests.support.stack import stop_worker_processes, wait_for, worker_process
from ttelgo.models import Invoice, InvoiceStatus
from ttelgo.sandbox.processes import ManagedProcess
from workflows.invoicing import InvoicingInput, InvoicingResult, InvoicingWorkflow

# A worker's INSERT of an invoice, waiting for a row lock (here: the test's own uncommitted invoice).
_WAITING_INSERT = text(
    """
    SELECT count(*) FROM pg_stat_activity
    WHERE wait_event_type = 'Lock' AND query ILIKE 'INSERT INTO invoices%'
    """
)


@pytest.mark.parametrize("b2b", [{"worker": False}], indirect=True)
async def test_sigkill_mid_invoicing_then_restart_invoices_each_vendor_once(b2b: B2B, tmp_path: Path) -> None:
    first = worker_process(b2b.settings, tmp_path / "worker-1.log")
    second: ManagedProcess | None = None
    blocker = b2b.sessions()
    try:
        vendors = [await b2b.new_vendor(billing_mode="POSTPAID", credit_limit=100_000) for _ in range(3)]
        for quantity, vendor in enumerate(vendors, start=1):
            await _completed_order(b2b, vendor, quantity=quantity)
        await _into_period(b2b)
        # The run invoices vendors in id order. The test holds an uncommitted invoice for the middle one,
        # so the worker's insert for it waits: the run is stopped after the first vendor's invoice.
        middle = sorted(uuid.UUID(v.id) for v in vendors)[1]
        await blocker.begin()
        blocker.add(
            Invoice(
                number="BLOCKER",
                vendor_id=middle,
                period=PERIOD,
                currency="USD",
                debits_minor=0,
                refunds_minor=0,
                total_minor=0,
                issued_at=datetime.now(UTC),
                due_at=datetime.now(UTC),
                status=InvoiceStatus.ISSUED,
                html="",
                csv="",
            )
        )
        await blocker.flush()
        handle = await b2b.temporal.start_workflow(
            InvoicingWorkflow.run,
            InvoicingInput(period=PERIOD),
            id=f"invoicing-crash-{uuid.uuid4().hex[:8]}",
            task_queue=b2b.settings.temporal_task_queue,
            result_type=InvoicingResult,
        )

        async def stuck_on_the_middle_vendor() -> bool:
            async with b2b.sessions() as session:
                return bool(await session.scalar(_WAITING_INSERT))

        async with asyncio.timeout(60):
            await wait_for(stuck_on_the_middle_vendor)
        async with b2b.sessions() as session:
            assert await session.scalar(select(func.count()).select_from(Invoice)) == 1, "one issued so far"
        os.kill(first.pid, signal.SIGKILL)  # mid-transaction: its invoice number is taken, not committed
        first.stop()
        await blocker.rollback()  # the dead worker's transaction goes on, finds no client, rolls back
        second = worker_process(b2b.settings, tmp_path / "worker-2.log")
        async with asyncio.timeout(150):  # the lost attempt is retried once its heartbeats have stopped
            result = await handle.result()
    finally:
        await blocker.close()
        await stop_worker_processes(b2b.temporal, first, second)

    assert result.period == PERIOD and len(result.invoices) == 3
    async with b2b.sessions() as session:
        invoices = list(await session.scalars(select(Invoice)))
    assert sorted(str(i.vendor_id) for i in invoices) == sorted(v.id for v in vendors), "one per vendor"
    assert _without_gaps(sorted(i.number for i in invoices)), "the killed attempt's number was given back"
    for invoice in invoices:
        assert invoice.period == PERIOD and invoice.total_minor == await _billed(b2b, str(invoice.vendor_id))
    assert {i.number for i in result.invoices} == {i.number for i in invoices}
    assert await b2b.invariants() == []
