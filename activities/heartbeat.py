"""Heartbeating while an activity's work runs, so a dead worker is noticed within the step's heartbeat
timeout instead of its (longer) start-to-close timeout."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from temporalio import activity

EVERY_S = 2.0


@contextlib.asynccontextmanager
async def heartbeating(every_s: float = EVERY_S) -> AsyncIterator[None]:
    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(every_s)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
