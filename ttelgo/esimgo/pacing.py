"""Spaces a process's calls to eSIM Go so a burst (a paged catalogue scan) stays under its rate limit."""

from __future__ import annotations

import asyncio
import time


class RequestPacer:
    """Lets at most `per_second` requests start per second, evenly spaced; waiting callers queue in order."""

    def __init__(self, per_second: float) -> None:
        self._interval = 1.0 / per_second if per_second > 0 else 0.0
        self._next_slot = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        if not self._interval:
            return
        async with self._lock:
            now = time.monotonic()
            delay = self._next_slot - now
            self._next_slot = max(now, self._next_slot) + self._interval
        if delay > 0:
            await asyncio.sleep(delay)
