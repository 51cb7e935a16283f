"""Fixtures that run the eSIM Go simulator for real (uvicorn on a free loopback port) and a callback receiver."""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response

from ttelgo.sandbox.esimgo_sim import SimConfig, create_app
from ttelgo.sandbox.threaded_server import serve_in_thread

API_KEY = "contract-test-key"


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class CallbackReceiver:
    """A tiny HTTP endpoint that records raw callback bodies; can be told to fail the next N deliveries."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    fail_next: int = 0

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/callbacks")
        async def receive(request: Request) -> Response:
            self.received.append(Received(dict(request.headers), await request.body()))
            if self.fail_next > 0:
                self.fail_next -= 1
                return Response(status_code=500)
            return Response(status_code=204)

        return app


@dataclass
class Sim:
    """Clients for one running simulator: `api` speaks eSIM Go v2.4, `admin` drives /_sim."""

    base: str
    api: httpx.Client
    admin: httpx.Client

    def balance(self) -> Decimal:
        return Decimal(str(self.admin.get("/organisation/balance").json()["balance"]))

    def order(
        self,
        item: str,
        quantity: int = 1,
        *,
        kind: str = "transaction",
        assign: bool = True,
        iccids: list[str] | None = None,
    ) -> httpx.Response:
        line: dict[str, Any] = {"type": "bundle", "quantity": quantity, "item": item, "allowReassign": False}
        if iccids is not None:
            line["iccids"] = iccids
        return self.api.post("/orders", json={"type": kind, "assign": assign, "order": [line]})

    def stats(self) -> dict[str, Any]:
        return self.admin.get("/stats").json()


@contextmanager
def running_sim(config: SimConfig, timeout: float = 10.0) -> Iterator[Sim]:
    with (
        serve_in_thread(create_app(config)) as base,
        httpx.Client(base_url=f"{base}/v2.4", headers={"X-API-Key": config.api_key}, timeout=timeout) as api,
        httpx.Client(base_url=f"{base}/_sim", timeout=timeout) as admin,
    ):
        yield Sim(base, api, admin)


@pytest.fixture(scope="module")
def receiver() -> Iterator[CallbackReceiver]:
    rec = CallbackReceiver()
    with serve_in_thread(rec.app()) as base:
        rec.url = f"{base}/callbacks"
        yield rec


@pytest.fixture(scope="module")
def shared_sim(receiver: CallbackReceiver) -> Iterator[Sim]:
    config = SimConfig(
        api_key=API_KEY,
        rate_limit_per_second=0,  # the dedicated rate-limit test runs its own instance
        async_completion_delay_s=0.3,
        callback_url=receiver.url,
        callback_backoff_s=0.01,
    )
    with running_sim(config) as sim:
        yield sim


@pytest.fixture
def sim(shared_sim: Sim, receiver: CallbackReceiver) -> Sim:
    """The shared simulator, reset to its initial state for each test."""
    assert shared_sim.admin.post("/reset").status_code == 200
    receiver.received.clear()
    receiver.fail_next = 0
    return shared_sim
