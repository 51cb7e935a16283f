"""Fixed one-second-window rate limiter per API key, like eSIM Go's 10 requests/s."""

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    reset_epoch: int  # unix second at which the current window ends

    def headers(self) -> dict[str, str]:
        return {
            "X-Ratelimit-Limit": str(self.limit),
            "X-Ratelimit-Remaining": str(self.remaining),
            "X-Ratelimit-Reset": str(self.reset_epoch),
        }


class FixedWindowRateLimiter:
    def __init__(self, per_second: int, clock: Callable[[], float] = time.time) -> None:
        self.per_second = per_second
        self._clock = clock
        self._windows: dict[str, tuple[int, int]] = {}

    @property
    def enabled(self) -> bool:
        return self.per_second > 0

    def reset(self, per_second: int | None = None) -> None:
        if per_second is not None:
            self.per_second = per_second
        self._windows.clear()

    def hit(self, key: str) -> RateDecision:
        window = int(self._clock())
        if len(self._windows) > 1024:  # callers presenting many keys must not grow memory forever
            self._windows = {k: v for k, v in self._windows.items() if v[0] == window}
        start, count = self._windows.get(key, (window, 0))
        if start != window:
            count = 0
        count += 1
        self._windows[key] = (window, count)
        return RateDecision(
            allowed=count <= self.per_second,
            limit=self.per_second,
            remaining=max(self.per_second - count, 0),
            reset_epoch=window + 1,
        )
