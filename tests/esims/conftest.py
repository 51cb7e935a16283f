"""eSIM read-model tests: the B2C world (its API over HTTP, so the simulator's callbacks reach it), with
its B2B helpers, a vendor webhook receiver and signed usage callbacks."""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from tests.b2b.conftest import B2B, VendorHandle
from tests.b2c.conftest import B2C, b2c, localstripe, mail_server  # noqa: F401  (the fixtures, reused)
from tests.webhooks.test_esimgo_callbacks import sign
from tests.webhooks_out.conftest import Receiver, receiver, team_member  # noqa: F401  (the fixture, reused)

BUNDLE = "esim_1GB_7D_FR_V2"  # 1 000 MB for 7 days
GB = 1_000_000_000


async def vendor_esim(world: B2C, hooks: Receiver | None = None) -> tuple[B2B, VendorHandle, dict[str, Any]]:
    """A vendor (sending its eSIM events to `hooks`, if given) and a completed wallet order."""
    b2b = await world.wallet_world()
    vendor = await b2b.new_vendor(balance=100_000)
    if hooks is not None:
        member = await team_member(b2b, vendor)
        events = ["esim.usage_threshold", "esim.expiring"]
        put = await b2b.api.put(
            "/api/v1/vendor/webhook", json={"url": hooks.url, "events": events}, headers=member
        )
        assert put.status_code == 200, put.text
    order = await b2b.order(vendor, customer_reference=f"ref-{uuid.uuid4().hex[:8]}")
    assert order.status_code == 201, order.text
    assert order.json()["status"] == "COMPLETED"
    return b2b, vendor, order.json()


def usage_callback(
    iccid: str,
    remaining: int,
    *,
    reference: str | None,
    initial: int = GB,
    alert: str = "Utilisation",
    start: datetime | None = None,
    end: datetime | None = None,
) -> bytes:
    return json.dumps(
        {
            "iccid": iccid,
            "alertType": alert,
            "bundle": {
                "id": "215000000",
                "reference": reference,
                "name": BUNDLE,
                "description": "1GB France",
                "initialQuantity": initial,
                "remainingQuantity": remaining,
                "startTime": start.isoformat() if start else None,
                "endTime": end.isoformat() if end else None,
                "unlimited": False,
            },
        }
    ).encode()


async def post_callback(api: httpx.AsyncClient, body: bytes) -> httpx.Response:
    response = await api.post(
        "/api/v1/webhooks/esimgo",
        content=body,
        headers={"content-type": "application/json", "X-Signature-SHA256": sign(body)},
    )
    assert response.status_code == 200, response.text
    return response


async def record_history(world: B2C, workflow_id: str, name: str) -> None:
    """With TTELGO_RECORD_HISTORIES set, the workflow's (latest run's) history becomes `histories/<name>.json`."""
    if os.environ.get("TTELGO_RECORD_HISTORIES"):
        history = await world.temporal.get_workflow_handle(workflow_id).fetch_history()
        (Path(__file__).parents[1] / "histories" / f"{name}.json").write_text(history.to_json())
