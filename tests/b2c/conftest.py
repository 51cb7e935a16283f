"""A B2C world per test: localstripe sending signed webhooks to a real API port, the worker, the eSIM Go
simulator, and customers who register, order and pay the way a front end would."""

from __future__ import annotations

import asyncio
import atexit
import functools
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from tests.b2b.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, B2B
from tests.support.esimgo import SimHandle
from tests.support.stack import running_worker, stack_settings
from ttelgo import ledger
from ttelgo.admins import ensure_admin
from ttelgo.db import session_factory
from ttelgo.order_invariants import check_order_invariants
from ttelgo.payments import IntentRef, StripeGateway
from ttelgo.sandbox.processes import ManagedProcess, free_port, wait_until
from ttelgo.sandbox.threaded_server import serve_in_thread
from ttelgo.settings import Settings

STRIPE_KEY = "sk_test_ttelgo_tests"
WEBHOOK_SECRET = "whsec_ttelgo_tests_0123456789abcdef"
BUNDLE = "esim_1GB_7D_FR_V2"
VISA, DECLINED = "pm_card_visa", "pm_card_chargeCustomerFail"


@pytest.fixture(scope="session")
def localstripe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    process = ManagedProcess(
        "localstripe",
        [sys.executable, "-m", "ttelgo.sandbox.localstripe_server", "--port", str(port)],
        tmp_path_factory.mktemp("localstripe") / "localstripe.log",
    ).start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: httpx.get(f"{base}/v1/customers", auth=(STRIPE_KEY, "")).status_code == 200,
            30,
            "waiting for localstripe",
            process,
        )
        yield base
    finally:
        process.stop()


def sign(event: dict[str, Any], *, secret: str = WEBHOOK_SECRET, at: int | None = None) -> tuple[bytes, str]:
    """A body and Stripe-Signature header as Stripe makes them (for events localstripe does not send)."""
    body = json.dumps(event).encode()
    timestamp = int(time.time()) if at is None else at
    signature = stripe.WebhookSignature._compute_signature(f"{timestamp}.{body.decode()}", secret)
    return body, f"t={timestamp},v1={signature}"


def intent_event(
    event_type: str, intent: IntentRef, metadata: dict[str, str], **extra: Any
) -> dict[str, Any]:
    return {
        "id": f"evt_{uuid.uuid4().hex[:20]}",
        "object": "event",
        "type": event_type,
        "created": int(time.time()),
        "data": {
            "object": {
                "id": intent.id,
                "object": "payment_intent",
                "amount": intent.amount_minor,
                "currency": intent.currency.lower(),
                "status": event_type.removeprefix("payment_intent."),
                "metadata": metadata,
                **extra,
            }
        },
    }


@dataclass
class MailServer:
    """The dev stack's SMTP server (aiosmtpd writing .eml files), in a thread, for the whole session."""

    port: int
    folder: Path

    def messages(self, to: str | None = None) -> list[Any]:
        from ttelgo.sandbox import smtp_server

        found = [smtp_server.read(path) for path in smtp_server.messages(self.folder)]
        return [m for m in found if to is None or m["To"] == to]


@functools.cache
def shared_mail_server() -> MailServer:
    """Started on first use, stopped when the test process exits (a plain function, not a fixture, so
    modules that import `b2c` alone keep working)."""
    from ttelgo.sandbox import smtp_server

    port, folder = free_port(), Path(tempfile.mkdtemp(prefix="ttelgo-test-mail-"))
    controller = smtp_server.start(folder, port)
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    atexit.register(controller.stop)  # runs first
    return MailServer(port, folder)


@pytest.fixture
def mail_server() -> MailServer:
    return shared_mail_server()


@dataclass
class Customer:
    email: str
    headers: dict[str, str]


@dataclass
class B2C:
    api: httpx.AsyncClient
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    temporal: Client
    sim: SimHandle
    stripe: StripeGateway
    api_base: str
    workflows: list[str] = field(default_factory=list)
    _admin: dict[str, str] = field(default_factory=dict)
    _admin_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def admin(self) -> dict[str, str]:
        async with self._admin_lock:
            return await self._admin_login()

    async def _admin_login(self) -> dict[str, str]:
        if not self._admin:
            async with self.sessions() as session:
                await ensure_admin(session, ADMIN_EMAIL, ADMIN_PASSWORD)
            login = await self.api.post(
                "/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
            )
            self._admin = {"Authorization": f"Bearer {login.json()['access_token']}"}
        return self._admin

    async def wallet_world(self) -> B2B:
        """The B2B helpers (vendors, wallet orders) on this world's API."""
        return B2B(self.api, self.settings, self.sessions, self.temporal, self.sim, await self.admin())

    async def paid_order(self, customer: Customer, **kwargs: Any) -> dict[str, Any]:
        """An order paid through localstripe and provisioned: COMPLETED."""
        response = await self.order(customer, **kwargs)
        assert response.status_code == 201, response.text
        order = response.json()
        assert (await self.pay(order["payment"]["payment_intent_id"])).status == "succeeded"
        return await self.wait_for(f"/api/v1/orders/{order['id']}", customer.headers, "COMPLETED")

    async def customer(self) -> Customer:
        email = f"{uuid.uuid4().hex[:10]}@example.com"
        response = await self.api.post(
            "/api/v1/auth/register", json={"email": email, "password": "a long enough password"}
        )
        assert response.status_code == 201, response.text
        return Customer(email, {"Authorization": f"Bearer {response.json()['access_token']}"})

    async def order(
        self,
        customer: Customer,
        *,
        bundle: str = BUNDLE,
        quantity: int = 1,
        key: str | None = None,
        **extra: Any,
    ) -> httpx.Response:
        response = await self.api.post(
            "/api/v1/orders",
            json={"bundle_code": bundle, "quantity": quantity, **extra},
            headers={**customer.headers, "Idempotency-Key": key or str(uuid.uuid4())},
        )
        if response.status_code == 201:
            self.workflows.append(f"order-{response.json()['id']}")
        return response

    async def pay(self, intent_id: str, card: str = VISA) -> IntentRef:
        """What Stripe.js does with the client secret; localstripe sends the webhook a second later."""
        try:
            return await self.stripe.confirm_intent(intent_id, card)
        except Exception:
            return await self.stripe.retrieve_intent(intent_id)

    async def wait_for(
        self, path: str, headers: dict[str, str], *statuses: str, field: str = "status", within_s: float = 30
    ) -> dict[str, Any]:
        deadline = time.monotonic() + within_s
        while True:
            body = (await self.api.get(path, headers=headers)).json()
            if body.get(field) in statuses or time.monotonic() > deadline:
                assert body.get(field) in statuses, f"{path}: still {body.get(field)}, wanted {statuses}"
                return body
            await asyncio.sleep(0.2)

    async def deliver(self, event: dict[str, Any], **signing: Any) -> httpx.Response:
        body, signature = sign(event, **signing)
        return await self.api.post(
            "/api/v1/webhooks/stripe",
            content=body,
            headers={"Stripe-Signature": signature, "Content-Type": "application/json"},
        )

    async def invariants(self) -> list[str]:
        async with self.sessions() as session:
            return await ledger.check_invariants(session) + await check_order_invariants(session)


@pytest.fixture
async def b2c(
    request: pytest.FixtureRequest,
    synced_database_url: str,
    temporal_env: WorkflowEnvironment,
    esimgo_sim: SimHandle,
    task_queue: str,
    localstripe: str,
) -> AsyncIterator[B2C]:
    """Parametrize indirectly with {"window_minutes": m} for a short payment window."""
    window = getattr(request, "param", {}).get("window_minutes", 30)
    settings = stack_settings(
        synced_database_url,
        temporal_env.client,
        esimgo_sim,
        task_queue,
        stripe_secret_key=STRIPE_KEY,
        stripe_api_base=localstripe,
        stripe_webhook_secret=WEBHOOK_SECRET,
        payment_window_minutes=window,
        smtp_port=shared_mail_server().port,  # the session's own SMTP server, never a dev stack's
    )
    engine = create_async_engine(synced_database_url, pool_size=10)
    gateway = StripeGateway(STRIPE_KEY, localstripe)
    try:
        with serve_in_thread(create_app(settings)) as api_base:
            # Every test points localstripe's one webhook at its own API.
            async with httpx.AsyncClient() as http:
                registered = await http.post(
                    f"{localstripe}/_config/webhooks/ttelgo",
                    data={"url": f"{api_base}/api/v1/webhooks/stripe", "secret": WEBHOOK_SECRET},
                    auth=(STRIPE_KEY, ""),
                )
                registered.raise_for_status()
            async with (
                running_worker(settings, temporal_env.client),
                httpx.AsyncClient(base_url=api_base, timeout=30) as api,
            ):
                world = B2C(
                    api, settings, session_factory(engine), temporal_env.client, esimgo_sim, gateway, api_base
                )
                yield world
                assert await world.invariants() == [], "ledger or order invariants broken by this test"
                await _record_histories(world)
    finally:
        await gateway.aclose()
        await engine.dispose()


async def _record_histories(world: B2C) -> None:
    """With TTELGO_RECORD_HISTORIES=<name>, the test's workflow histories become replay fixtures,
    named `<kind>_<name>[_<n>].json` (kind: order, topup, refund)."""
    name = os.environ.get("TTELGO_RECORD_HISTORIES")
    if not name:
        return
    counts: dict[str, int] = {}
    for workflow_id in world.workflows:
        kind = workflow_id.split("-")[0]
        counts[kind] = counts.get(kind, 0) + 1
        suffix = f"_{counts[kind]}" if counts[kind] > 1 else ""
        history = await world.temporal.get_workflow_handle(workflow_id).fetch_history()
        (Path(__file__).parents[1] / "histories" / f"{kind}_{name}{suffix}.json").write_text(
            history.to_json()
        )
