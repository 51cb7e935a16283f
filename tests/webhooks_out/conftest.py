"""Vendor webhook tests: the B2B world with short webhook backoffs, a local receiver, a team login."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request, Response

from tests.b2b.conftest import B2B, VendorHandle, b2b  # noqa: F401  (the fixture, reused)
from tests.b2c.conftest import b2c, localstripe, mail_server  # noqa: F401  (the fixtures, reused)
from ttelgo.sandbox.threaded_server import serve_in_thread

# Attempts 1 s, 2 s, 4 s apart (a real Temporal server, real timers).
FAST = {"settings": {"webhook_first_backoff_seconds": 1}}


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A vendor's endpoint: answers `failures` 500s first (or always `status`), then 200."""

    url: str = ""
    failures: int = 0
    status: int = 200
    calls: list[Received] = field(default_factory=list)

    def answered(self, status: int) -> list[Received]:
        return [c for c in self.calls if c.status == status]

    async def wait_for(self, predicate: Any, within: float = 30) -> None:
        deadline = time.monotonic() + within
        while not predicate():
            assert time.monotonic() < deadline, f"receiver saw {len(self.calls)} call(s)"
            await asyncio.sleep(0.1)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()
    app = FastAPI()

    @app.post("/hooks")
    async def hook(request: Request) -> Response:
        body = await request.body()
        failing = len(state.calls) < state.failures
        status = 500 if failing else state.status
        state.calls.append(Received(dict(request.headers), body, status))
        return Response("not now" if failing else "ok", status_code=status)

    with serve_in_thread(app) as base:
        state.url = f"{base}/hooks"
        yield state


async def team_member(world: B2B, vendor: VendorHandle, role: str = "developer") -> dict[str, str]:
    email = f"{role}-{uuid.uuid4().hex[:8]}@example.com"
    added = await world.api.post(
        f"/api/v1/admin/vendors/{vendor.id}/users",
        json={"email": email, "password": "a long enough password", "role": role},
        headers=world.admin,
    )
    assert added.status_code == 201, added.text
    login = await world.api.post(
        "/api/v1/vendor/auth/login", json={"email": email, "password": "a long enough password"}
    )
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


async def record_history(world: B2B, workflow_id: str) -> None:
    """With TTELGO_RECORD_HISTORIES=<name>, the delivery's history becomes `webhook_<name>.json`."""
    name = os.environ.get("TTELGO_RECORD_HISTORIES")
    if name:
        handle = world.temporal.get_workflow_handle(workflow_id)
        await handle.result()
        history = await handle.fetch_history()
        (Path(__file__).parents[1] / "histories" / f"webhook_{name}.json").write_text(history.to_json())
