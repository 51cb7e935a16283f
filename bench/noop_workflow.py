"""The ceiling for the order benchmark: a workflow of three no-op activities, nothing else."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow


@activity.defn(name="bench.noop")
async def noop(step: int) -> int:
    return step


@workflow.defn(name="BenchThreeNoops")
class ThreeNoopsWorkflow:
    @workflow.run
    async def run(self) -> int:
        total = 0
        for step in range(3):
            total += await workflow.execute_activity(noop, step, start_to_close_timeout=timedelta(seconds=10))
        return total
