"""Benchmark: the bare-workflow ceiling (bench/noop_workflow.py, three no-op activities) on two Temporal
dev servers started as the dev stack starts them, SQLite with default pragmas and in WAL
(`--sqlite-pragma journal_mode=wal --sqlite-pragma synchronous=normal`), loaded alternately from this
process (one worker per server):

    .venv/bin/python -m bench.temporal_wal [--workflows 200] [--concurrency 20] [--rounds 2]
"""

from __future__ import annotations

import asyncio
import uuid

from temporalio.client import Client
from temporalio.worker import Worker

from bench.loadgen import rss_mb
from bench.noop_workflow import ThreeNoopsWorkflow, noop
from bench.orders import measure, report
from bench.stack import Stack, parser
from ttelgo.sandbox.processes import ManagedProcess


async def bench(
    servers: dict[str, tuple[int, ManagedProcess]], workflows: int, concurrency: int, rounds: int
) -> None:
    clients = {label: await Client.connect(f"127.0.0.1:{port}") for label, (port, _) in servers.items()}
    workers = [
        Worker(client, task_queue="bench-noop", workflows=[ThreeNoopsWorkflow], activities=[noop])
        for client in clients.values()
    ]
    rss = {label: [rss_mb(process.pid)] for label, (_, process) in servers.items()}
    best: dict[str, float] = {}
    async with asyncio.TaskGroup() as running:
        for worker in workers:
            running.create_task(worker.run())
        for round_no in range(1, rounds + 1):
            for label, client in clients.items():

                async def bare(_: int, client: Client = client) -> bool:
                    await client.execute_workflow(
                        ThreeNoopsWorkflow.run, id=f"bench-{uuid.uuid4()}", task_queue="bench-noop"
                    )
                    return True

                if round_no == 1:
                    await measure(10, 5, bare)  # warm-up
                rate = report(
                    f"{label} (round {round_no})", workflows, *await measure(workflows, concurrency, bare)
                )
                best[label] = max(best.get(label, 0.0), rate)
        for worker in workers:
            await worker.shutdown()
    for label, (_, process) in servers.items():
        rss[label].append(rss_mb(process.pid))
    print(f"\nbest of {rounds}, {concurrency} concurrent:")
    for label, rate in best.items():
        before, after = rss[label]
        print(f"{label:<34} {rate:7.1f} wf/s   server RSS {before:.0f} → {after:.0f} MiB")
    default, wal = best.values()
    print(f"ratio default / WAL: {default / wal:.2f} (WAL is {wal / default:.2f}×)")


def main() -> None:
    cli = parser(__doc__, concurrency=20, rounds=2)
    cli.add_argument("--workflows", type=int, default=200)
    args = cli.parse_args()
    with Stack() as stack:
        servers = {
            "SQLite, default pragmas": stack.temporal("default", wal=False),
            "SQLite, WAL + synchronous=normal": stack.temporal("wal", wal=True),
        }
        asyncio.run(bench(servers, args.workflows, args.concurrency, args.rounds))


if __name__ == "__main__":
    main()
