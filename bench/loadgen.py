"""A closed-loop HTTP load generator: N concurrent clients for T seconds, spread over several processes (one
Python client process saturates a core well before the API does), with latency percentiles.

Clients use aiohttp (several times cheaper per request than httpx). A request body, when there is one,
comes from `body(n)`, a module-level function (it is sent to the client processes by reference) giving
request n's bytes and extra headers, so every request can be a different event.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing import get_context
from multiprocessing.connection import Connection

import aiohttp
import psutil

BodyFactory = Callable[[int], tuple[bytes, dict[str, str]]]


@dataclass
class LoadResult:
    label: str
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    server_cpu_us: float | None = None  # the server process's CPU time per request, when its pid was given

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def line(self) -> str:
        cpu = f"   server CPU {self.server_cpu_us:5.0f} µs/req" if self.server_cpu_us else ""
        return (
            f"{self.label:<28} {self.rps:8.0f} req/s   p50 {self.p50_ms:6.2f} ms   p99 {self.p99_ms:6.2f} ms"
            f"{cpu}   ({self.requests} requests, {self.errors} errors)"
        )


@dataclass(frozen=True)
class _Job:
    url: str
    method: str
    headers: dict[str, str]
    body: BodyFactory | None
    ok: frozenset[int]
    concurrency: int
    process: int
    processes: int


@dataclass(frozen=True)
class _Window:  # wall-clock times shared by every client process
    warm_from: float
    start_at: float
    stop_at: float


@dataclass
class _Counts:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0


async def _client(job: _Job, window: _Window) -> _Counts:
    counts = _Counts()
    sequence = job.process
    connector = aiohttp.TCPConnector(limit=job.concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=job.headers) as session:
        await asyncio.sleep(max(0.0, window.warm_from - time.time()))

        async def user() -> None:
            nonlocal sequence
            while (now := time.time()) < window.stop_at:
                data, extra = job.body(sequence) if job.body else (None, {})
                sequence += job.processes  # unique across processes
                started = time.perf_counter()
                try:
                    async with session.request(job.method, job.url, data=data, headers=extra) as response:
                        await response.read()
                        failed = response.status not in job.ok
                except aiohttp.ClientError:
                    failed = True
                if now >= window.start_at:  # warm-up requests are not counted
                    counts.latencies.append(time.perf_counter() - started)
                    counts.errors += failed

        await asyncio.gather(*(user() for _ in range(job.concurrency)))
    return counts


def _client_process(job: _Job, pipe: Connection) -> None:
    pipe.send("ready")  # imported and started: the parent can now fix the common start time
    window = pipe.recv()
    pipe.send(asyncio.run(_client(job, window)))


async def run_load(
    url: str,
    *,
    label: str,
    concurrency: int,
    seconds: float,
    warmup_s: float = 1.0,
    headers: dict[str, str] | None = None,
    method: str = "GET",
    body: BodyFactory | None = None,
    ok: frozenset[int] = frozenset({200}),
    processes: int = 2,
    server_pid: int | None = None,
) -> LoadResult:
    """`concurrency` clients in total, shared by `processes` client processes started for this run.

    With `server_pid`, the server's CPU time per request is measured too: on a machine whose cores are
    shared (with the clients, or with anything else), it says what a request costs the server better than
    the request rate does."""
    spawn = get_context("spawn")
    clients = []
    for i in range(processes):
        share = max(1, concurrency // processes + (i < concurrency % processes))
        job = _Job(url, method, headers or {}, body, ok, share, i, processes)
        parent, child = spawn.Pipe()
        process = spawn.Process(target=_client_process, args=(job, child), daemon=True)
        process.start()
        clients.append((process, parent))
    try:
        for _, pipe in clients:
            await asyncio.to_thread(pipe.recv)
        warm_from = time.time() + 0.2
        window = _Window(warm_from, warm_from + warmup_s, warm_from + warmup_s + seconds)
        for _, pipe in clients:
            pipe.send(window)
        server = psutil.Process(server_pid) if server_pid else None
        await asyncio.sleep(max(0.0, window.start_at - time.time()))
        cpu_before = _cpu_s(server)
        await asyncio.sleep(max(0.0, window.stop_at - time.time()))
        cpu_used = _cpu_s(server) - cpu_before
        results: list[_Counts] = [await asyncio.to_thread(pipe.recv) for _, pipe in clients]
    finally:
        for process, _ in clients:
            process.join(timeout=10)
    latencies = [latency for result in results for latency in result.latencies]
    quantiles = statistics.quantiles(latencies, n=100)
    return LoadResult(
        label,
        len(latencies),
        sum(result.errors for result in results),
        seconds,
        quantiles[49] * 1000,
        quantiles[98] * 1000,
        cpu_used / len(latencies) * 1e6 if server else None,
    )


def print_summary(best: dict[str, LoadResult], baseline: str = "healthz") -> None:
    """Each route against the baseline: the request-rate ratio, and the ratio of server CPU per request
    (what the rate ratio would be if the server's CPU were all that bounds both)."""
    base = best[baseline]
    for label, result in best.items():
        line = f"  {label:<26} {result.rps:7.0f} /s  p99 {result.p99_ms:7.1f} ms  rate ratio {result.rps / base.rps:.2f}"
        if result.server_cpu_us and base.server_cpu_us:
            cpu_ratio = base.server_cpu_us / result.server_cpu_us
            line += f"   server CPU {result.server_cpu_us:5.0f} µs/req, ratio {cpu_ratio:.2f}"
        print(line)


def _cpu_s(process: psutil.Process | None) -> float:
    if process is None:
        return 0.0
    times = process.cpu_times()
    return times.user + times.system


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20
