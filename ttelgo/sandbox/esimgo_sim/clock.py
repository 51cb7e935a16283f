"""The simulator's now: real time plus an offset tests move through `/_sim/clock`, so bundles start, run out
and expire (and callbacks carry start and end times) days away without waiting days."""

from datetime import UTC, datetime, timedelta


class SimClock:
    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def view(self) -> dict[str, object]:
        return {"now": self().isoformat(), "offset_seconds": self.offset.total_seconds()}
