"""A small closed-loop HTTP load generator: N concurrent clients for T seconds, latency percentiles."""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass

import httpx


@dataclass
class LoadResult:
    label: str
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def line(self) -> str:
        return (
            f"{self.label:<28} {self.rps:8.0f} req/s   p50 {self.p50_ms:6.2f} ms   p99 {self.p99_ms:6.2f} ms"
            f"   ({self.requests} requests, {self.errors} errors)"
        )


async def run_load(
    url: str,
    *,
    label: str,
    concurrency: int,
    seconds: float,
    warmup_s: float = 1.0,
    headers: dict[str, str] | None = None,
) -> LoadResult:
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=10, headers=headers) as client:
        warm_until = time.perf_counter() + warmup_s
        while time.perf_counter() < warm_until:
            await client.get(url)
        stop_at = time.perf_counter() + seconds

        async def user() -> None:
            nonlocal errors
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                response = await client.get(url)
                latencies.append(time.perf_counter() - started)
                errors += response.status_code != 200

        started = time.perf_counter()
        await asyncio.gather(*(user() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    quantiles = statistics.quantiles(latencies, n=100)
    return LoadResult(label, len(latencies), errors, elapsed, quantiles[49] * 1000, quantiles[98] * 1000)
