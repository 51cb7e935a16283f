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
        self.validations = 0
        self.bundles_ordered: Counter[str] = Counter()
        self.callbacks_attempted = 0
        self.callbacks_delivered = 0

    def record_order(self, quantities: dict[str, int]) -> None:
        self.transactions += 1
        self.bundles_ordered.update(quantities)

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "responses": {k: dict(v) for k, v in self.responses.items()},
            "faults": dict(self.faults),
            "rate_limited": self.rate_limited,
            "orders": {
                "transactions": self.transactions,
                "validations": self.validations,
                "bundles_ordered": sum(self.bundles_ordered.values()),
                "by_bundle": dict(self.bundles_ordered),
            },
            "callbacks": {"attempted": self.callbacks_attempted, "delivered": self.callbacks_delivered},
        }
