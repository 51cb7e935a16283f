"""The monthly `invoicing` Schedule: the worker keeps it (02:00 UTC on the 1st, the month before, missed runs
caught up), and a run it starts invoices last month's POSTPAID orders.

Honest scope: no time-skipping environment. The orders' statement rows are moved into last month (as in
test_invoices.py) and the schedule is triggered now; its run works the month out from its start time, which
is what the 1st-of-the-month firing relies on.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

from temporalio.client import ScheduleActionStartWorkflow
from temporalio.service import RPCError

from tests.b2b.conftest import B2B
from tests.b2b.test_invoices import PERIOD, _billed, _completed_order, _into_period
from worker import ensure_invoicing_schedule
from workflows.invoicing import SCHEDULE_ID, InvoicingResult


async def test_the_monthly_schedule_invoices_last_months_postpaid_orders(b2b: B2B) -> None:
    vendor = await b2b.new_vendor(billing_mode="POSTPAID", credit_limit=100_000)
    prepaid = await b2b.new_vendor(balance=100_000)
    await _completed_order(b2b, vendor, quantity=2)
    await _completed_order(b2b, prepaid)
    await _into_period(b2b)
    schedule = b2b.temporal.get_schedule_handle(SCHEDULE_ID)
    try:
        await ensure_invoicing_schedule(b2b.temporal, b2b.settings)
        described = await schedule.describe()
        action = described.schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow)
        assert (action.workflow, action.id) == ("Invoicing", "invoicing")
        assert action.task_queue == b2b.settings.temporal_task_queue
        [argument] = await b2b.temporal.data_converter.decode(action.args)
        assert argument == {"period": None, "vendor_id": None}  # the month before the run, every vendor
        [calendar] = described.schedule.spec.calendars
        assert [(r.start, r.end) for r in calendar.day_of_month] == [(1, 1)]
        assert [(r.start, r.end) for r in calendar.hour] == [(2, 2)]
        assert described.schedule.policy.catchup_window == timedelta(days=7)

        await schedule.trigger()
        for _ in range(300):
            recent = (await schedule.describe()).info.recent_actions
            if recent:
                break
            await asyncio.sleep(0.1)
        [started] = recent
        run = b2b.temporal.get_workflow_handle(started.action.workflow_id, result_type=InvoicingResult)
        result = await run.result()
    finally:
        with contextlib.suppress(RPCError):
            await schedule.delete()

    assert result.period == PERIOD
    [invoice] = result.invoices
    assert invoice.created and invoice.total_minor == await _billed(b2b, vendor.id)
