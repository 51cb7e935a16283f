"""Benchmark: signed Stripe events through `POST /api/v1/webhooks/stripe`, against `/healthz` on the same API
process (`python -m api.serve`, as users run it).

    .venv/bin/python -m bench.webhooks [--seconds 8] [--concurrency 32] [--rounds 2]

Two kinds of event, each with a new event id (so every one is recorded, none is a duplicate):
- "pending order": `payment_intent.processing` naming a workflow that waits for payment events (signal
  `payment_event`, like a B2C order's); recorded, signalled, marked DELIVERED;
- "recorded and ignored": `payment_intent.created`, a type no workflow acts on; recorded as IGNORED.

Starts embedded PostgreSQL and the Temporal dev server; the waiting workflows run in this process, the API
in its own, and the load from separate client processes. A pending-order event cannot go faster than the
Temporal server takes signals, so that is measured too (bare signals from this process, same workflows).
Prints the API's RSS before and after.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import statistics
import time
import uuid
from argparse import Namespace

from sqlalchemy import func, select
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import Worker

from bench.loadgen import LoadResult, print_summary, rss_mb, run_load
from bench.stack import Stack, api_env, http_load_parser
from ttelgo import codec
from ttelgo.db import create_engine, session_factory
from ttelgo.models import WebhookEvent
from ttelgo.sandbox.processes import ManagedProcess

SECRET = "whsec_bench"
WORKFLOWS = 50  # pending orders the events are spread over
TASK_QUEUE = "bench-webhooks"


@workflow.defn(name="BenchAwaitPayment", sandboxed=False)
class AwaitPaymentWorkflow:
    """Stands in for an order waiting for its card payment: takes payment events until cancelled."""

    def __init__(self) -> None:
        self.events = 0

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)

    @workflow.signal
    def payment_event(self, _event: object) -> None:
        self.events += 1


def pending_workflow_id(n: int) -> str:
    return f"bench-await-payment-{n % WORKFLOWS}"


def _signed(event: dict[str, object]) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(event).encode()
    at = int(time.time())
    signature = hmac.new(SECRET.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return body, {"Stripe-Signature": f"t={at},v1={signature}", "Content-Type": "application/json"}


def _intent_event(n: int, event_type: str) -> tuple[bytes, dict[str, str]]:
    intent = f"pi_bench_{n % WORKFLOWS}"
    return _signed(
        {
            "id": f"evt_{uuid.uuid4().hex}",
            "object": "event",
            "type": event_type,
            "created": int(time.time()),
            "data": {
                "object": {
                    "id": intent,
                    "object": "payment_intent",
                    "amount": 1299,
                    "currency": "eur",
                    "status": "processing",
                    "metadata": {"workflow_id": pending_workflow_id(n)},
                }
            },
        }
    )


def pending_order_event(n: int) -> tuple[bytes, dict[str, str]]:
    return _intent_event(n, "payment_intent.processing")


def ignored_event(n: int) -> tuple[bytes, dict[str, str]]:
    return _intent_event(n, "payment_intent.created")


async def stored_events(database_url: str) -> dict[str, int]:
    engine = create_engine(database_url, pool_size=1)
    async with session_factory(engine)() as session:
        rows = await session.execute(select(WebhookEvent.status, func.count()).group_by(WebhookEvent.status))
        counts = {status.value: count for status, count in rows}
    await engine.dispose()
    return counts


async def signal_rate(temporal: Client, concurrency: int, seconds: float) -> LoadResult:
    """The Temporal server's own ceiling for the pending-order events: bare signals to the same workflows."""
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def user(n: int) -> None:
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            await temporal.get_workflow_handle(pending_workflow_id(n)).signal("payment_event", {"n": n})
            latencies.append(time.perf_counter() - started)
            n += concurrency

    await asyncio.gather(*(user(n) for n in range(concurrency)))
    q = statistics.quantiles(latencies, n=100)
    return LoadResult("bare Temporal signals", len(latencies), 0, seconds, q[49] * 1000, q[98] * 1000)


async def bench(args: Namespace, base: str, temporal: Client, api: ManagedProcess) -> None:
    kinds = {
        "healthz": (f"{base}/healthz", "GET", None),
        "pending order": (f"{base}/api/v1/webhooks/stripe", "POST", pending_order_event),
        "recorded+ignored": (f"{base}/api/v1/webhooks/stripe", "POST", ignored_event),
    }
    async with Worker(temporal, task_queue=TASK_QUEUE, workflows=[AwaitPaymentWorkflow]):
        handles = [
            await temporal.start_workflow(
                AwaitPaymentWorkflow.run, id=pending_workflow_id(n), task_queue=TASK_QUEUE
            )
            for n in range(WORKFLOWS)
        ]
        print(f"API RSS before: {rss_mb(api.pid):.0f} MB")
        results: dict[str, list[LoadResult]] = {kind: [] for kind in [*kinds, "bare signals"]}
        for round_no in range(1, args.rounds + 1):
            signals = await signal_rate(temporal, args.concurrency, args.seconds)
            results["bare signals"].append(signals)
            print(signals.line(), flush=True)
            for kind, (url, method, body) in kinds.items():
                result = await run_load(
                    url,
                    label=f"{kind} (round {round_no})",
                    concurrency=args.concurrency,
                    seconds=args.seconds,
                    method=method,
                    body=body,
                    processes=args.clients,
                    server_pid=api.pid,
                )
                results[kind].append(result)
                print(result.line(), flush=True)
        print(f"API RSS after: {rss_mb(api.pid):.0f} MB")
        for handle in handles:
            await handle.cancel()

    best = {kind: max(runs, key=lambda r: r.rps) for kind, runs in results.items()}
    print(f"\nbest of {args.rounds} rounds, {args.concurrency} concurrent clients:")
    print_summary(best)


def main() -> None:
    args = http_load_parser(__doc__).parse_args()
    with Stack() as stack:
        database_url = stack.postgres()
        temporal_port, _ = stack.temporal()
        payload_keys = codec.new_key_spec("bench")  # encrypted payloads, as users run it
        env = api_env(
            database_url,
            temporal_port,
            TEMPORAL_PAYLOAD_KEYS=payload_keys,
            STRIPE_SECRET_KEY="sk_test_bench",
            STRIPE_WEBHOOK_SECRET=SECRET,
        )
        base, api = stack.api("api", env, root=args.api_root)

        async def run() -> None:
            temporal = await Client.connect(
                f"127.0.0.1:{temporal_port}", data_converter=codec.data_converter(payload_keys)
            )
            await bench(args, base, temporal, api)

        asyncio.run(run())
        print(f"webhook_events rows by status: {asyncio.run(stored_events(database_url))}")


if __name__ == "__main__":
    main()
