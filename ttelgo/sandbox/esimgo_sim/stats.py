"""Counters the tests assert on, e.g. "exactly one supplier order was placed"."""

from collections import Counter, defaultdict
from typing import Any


class SimStats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.requests: Counter[str] = Counter()
        self.responses: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.faults: Counter[str] = Counter()
        self.rate_limited = 0
        self.transactions = 0
        self.order_lines = 0
        self.validations = 0
        self.bundles_ordered: Counter[str] = Counter()
        self.callbacks_attempted = 0
        self.callbacks_delivered = 0

    def record_order(self, lines: list[tuple[str, int]]) -> None:
        """One transaction of `lines` (bundle name, quantity); a name may come on several lines."""
        self.transactions += 1
        self.order_lines += len(lines)
        for name, quantity in lines:
            self.bundles_ordered[name] += quantity

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "responses": {k: dict(v) for k, v in self.responses.items()},
            "faults": dict(self.faults),
            "rate_limited": self.rate_limited,
            "orders": {
                "transactions": self.transactions,
                "lines": self.order_lines,
                "validations": self.validations,
                "bundles_ordered": sum(self.bundles_ordered.values()),
                "by_bundle": dict(self.bundles_ordered),
            },
            "callbacks": {"attempted": self.callbacks_attempted, "delivered": self.callbacks_delivered},
        }
