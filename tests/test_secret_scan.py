"""Workflow histories hold no secret in clear: a card order and a wallet order run to COMPLETED and an unpaid
card order is canceled, then everything Temporal stored for them is read as an operator could read it
(raw payload bytes, failure messages, search attributes, memos) and searched for activation codes, Stripe
client secrets and keys, password hashes, tokens and e-mail addresses."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

from tests.b2c.conftest import B2C, b2c, localstripe  # noqa: F401  (fixtures)
from tests.support.secret_scan import scan_events, scan_text
from ttelgo.codec import EncryptionCodec, is_encrypted, parse_keys


async def _histories(world: B2C, *known: str) -> dict[str, list[HistoryEvent]]:
    """Every workflow the test's task queues ran (the orders and what they started), by id."""
    queue = world.settings.temporal_task_queue
    ids = set(known)
    # Visibility is eventually consistent: wait until the listing has caught up with what we know.
    for _ in range(50):
        listed = {w.id async for w in world.temporal.list_workflows(f"TaskQueue = '{queue}'")}
        if set(known) <= listed:
            ids |= listed
            break
        await asyncio.sleep(0.2)
    return {
        workflow_id: [e async for e in world.temporal.get_workflow_handle(workflow_id).fetch_history_events()]
        for workflow_id in sorted(ids)
    }


async def _run_orders(world: B2C) -> tuple[dict[str, Any], list[str]]:
    """A paid card order, a canceled unpaid one and a wallet order; answers what must not leak."""
    customer = await world.customer()
    paid = await world.paid_order(customer)
    created = await world.order(customer)
    assert created.status_code == 201, created.text
    unpaid = created.json()
    canceled = await world.api.post(f"/api/v1/orders/{unpaid['id']}/cancel", headers=customer.headers)
    assert canceled.status_code == 200, canceled.text
    b2b = await world.wallet_world()
    vendor = await b2b.new_vendor(balance=50_000)
    wallet = await b2b.order(vendor)
    assert wallet.status_code == 201 and wallet.json()["status"] == "COMPLETED", wallet.text
    esims = paid["esims"] + wallet.json()["esims"]
    assert esims
    secrets = [
        customer.email,
        unpaid["payment"]["client_secret"],
        vendor.key,
        *(e["lpa"] for e in esims),
        *(e["matching_id"] for e in esims),
    ]
    orders = {"paid": paid["id"], "unpaid": unpaid["id"], "wallet": wallet.json()["id"]}
    return orders, secrets


async def test_histories_of_completed_orders_hold_no_secret_in_clear(b2c: B2C) -> None:  # noqa: F811
    orders, secrets = await _run_orders(b2c)
    histories = await _histories(b2c, *(f"order-{order_id}" for order_id in orders.values()))
    assert len(histories) >= 3
    found = [f for workflow_id, events in histories.items() for f in scan_events(workflow_id, events)]
    assert found == [], "\n".join(map(str, found))
    # And the exact values, wherever in the stored bytes they might hide.
    stored = b"".join(e.SerializeToString() for events in histories.values() for e in events)
    assert [s for s in secrets if s.encode() in stored] == []


async def test_no_activity_result_holds_a_client_secret(b2c: B2C) -> None:  # noqa: F811
    """Even decrypted, a result holds no Stripe client secret: `payments.cancel` answered the whole intent."""
    orders, _ = await _run_orders(b2c)
    histories = await _histories(b2c, *(f"order-{order_id}" for order_id in orders.values()))
    codec = EncryptionCodec(parse_keys(str(b2c.settings.temporal_payload_keys)))
    results: list[Payload] = [
        payload
        for events in histories.values()
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
        for payload in e.activity_task_completed_event_attributes.result.payloads
    ]
    assert results and all(is_encrypted(p) for p in results)
    plain = [json.dumps(json.loads(p.data)) for p in await codec.decode(results) if p.data]
    found = [f for text in plain for f in scan_text("activity result", text) if "Stripe" in f.kind]
    assert found == [], "\n".join(map(str, found))
