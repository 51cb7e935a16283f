"""Hostile input gets a 4xx at the edge: no 500, no workflow that retries for ever, no action without its
audit row (issue 15)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
import stripe
from sqlalchemy import func, select
from temporalio import activity, workflow
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ActivityError, ApplicationError, RetryState
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.data_errors import BAD_DATA
from api.order_views import order_id_for
from api.refunds import REFUND_IDS
from tests.b2b.conftest import B2B
from tests.support.esimgo import SIM_API_KEY
from tests.webhooks.test_esimgo_callbacks import sign as sign_callback
from ttelgo.db import create_engine, session_factory
from ttelgo.models import AuditLog, Order, WebhookEvent
from worker import INTERCEPTORS
from workflows.order import order_workflow_id
from workflows.refund import refund_workflow_id

NUL = "\x00"
TOO_BIG = 2**63  # one past BIGINT
WEBHOOK_SECRET = "whsec_hostile_input_tests"
with_stripe_secret = pytest.mark.parametrize(
    "b2b", [{"settings": {"stripe_webhook_secret": WEBHOOK_SECRET}}], indirect=True
)


def assert_validation_error(response: Any) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "VALIDATION_ERROR"


async def assert_no_workflow(b2b: B2B, workflow_id: str) -> None:
    with pytest.raises(RPCError) as missing:
        await b2b.temporal.get_workflow_handle(workflow_id).describe()
    assert missing.value.status is RPCStatusCode.NOT_FOUND


async def audit_rows(b2b: B2B, action: str, target_id: object) -> list[AuditLog]:
    async with b2b.sessions() as session:
        return list(
            await session.scalars(
                select(AuditLog).where(AuditLog.action == action, AuditLog.target_id == str(target_id))
            )
        )


async def vendor_owner(b2b: B2B) -> dict[str, str]:
    """A vendor's owner, logged in (webhook settings are for team members, not API keys)."""
    email, password = f"{uuid.uuid4().hex[:10]}@example.com", "a long enough password"
    created = await b2b.api.post(
        "/api/v1/admin/vendors",
        json={"name": "Owner Shop", "contact_email": email, "owner_email": email, "owner_password": password},
        headers={**b2b.admin, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert created.status_code == 201, created.text
    approved = await b2b.api.post(f"/api/v1/admin/vendors/{created.json()['id']}/approve", headers=b2b.admin)
    assert approved.status_code == 200, approved.text
    login = await b2b.api.post("/api/v1/vendor/auth/login", json={"email": email, "password": password})
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


async def test_nul_in_anonymous_inputs_is_422(b2b: B2B) -> None:
    for path, body in [
        ("/api/v1/auth/login", {"email": f"a{NUL}@example.com", "password": "x"}),
        ("/api/v1/auth/login", {"email": "root@example.com", "password": f"pass{NUL}"}),
        ("/api/v1/vendor/auth/login", {"email": f"v{NUL}@example.com", "password": "x"}),
        ("/api/v1/auth/register", {"email": "n@example.com", "password": f"a long {NUL} password"}),
    ]:
        assert_validation_error(await b2b.api.post(path, json=body))
    assert_validation_error(await b2b.api.get("/api/v1/catalogue", params={"region": f"Eu{NUL}rope"}))
    assert_validation_error(await b2b.api.get("/api/v1/catalogue/bundles/esim%001GB"))
    # Before authentication too: a refused credential must not be the first thing a NUL reaches.
    assert_validation_error(await b2b.api.get("/api/v1/admin/orders", params={"customer_email": NUL}))


async def test_nul_in_authenticated_inputs_is_422_and_changes_nothing(b2b: B2B) -> None:
    vendor = await b2b.new_vendor(balance=10_000)
    key = str(uuid.uuid4())
    refused = await b2b.order(vendor, key=key, customer_reference=f"ref{NUL}1")
    assert_validation_error(refused)
    await assert_no_workflow(b2b, order_workflow_id(order_id_for(f"vendor:{vendor.id}", key)))

    admin = b2b.admin
    for method, path, kwargs in [
        ("GET", "/api/v1/admin/orders", {"params": {"customer_email": f"x{NUL}@example.com"}}),
        ("GET", "/api/v1/admin/audit-logs", {"params": {"target_id": NUL}}),
        ("GET", f"/api/v1/admin/orders/{uuid.uuid4()}/esims/89%00/qr.png", {}),
        ("POST", f"/api/v1/admin/vendors/{vendor.id}/api-keys", {"json": {"name": f"ci{NUL}"}}),
        ("POST", f"/api/v1/admin/vendors/{vendor.id}/suspend", {"json": {"reason": f"fraud{NUL}"}}),
    ]:
        assert_validation_error(await b2b.api.request(method, path, headers=admin, **kwargs))
    created = await b2b.api.post(
        "/api/v1/admin/vendors",
        json={"name": f"Bad{NUL}Shop", "contact_email": "bad@example.com"},
        headers={**admin, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert_validation_error(created)
    assert (await b2b.wallet(vendor))["balance_minor"] == 10_000  # still approved, still trading


async def test_nul_in_a_refund_reason_is_422_and_starts_no_workflow(b2b: B2B) -> None:
    vendor = await b2b.new_vendor(balance=10_000)
    order = (await b2b.order(vendor)).json()
    assert order["status"] == "COMPLETED"
    key = str(uuid.uuid4())
    refused = await b2b.api.post(
        f"/api/v1/vendor/orders/{order['id']}/refund",
        json={"reason": f"unused{NUL}"},
        headers={**vendor.headers, "Idempotency-Key": key},
    )
    assert_validation_error(refused)
    await assert_no_workflow(b2b, refund_workflow_id(uuid.uuid5(REFUND_IDS, f"vendor:{vendor.id}:{key}")))
    assert await audit_rows(b2b, "order.refund", order["id"]) == []


async def test_a_refund_of_a_made_up_order_is_404_and_starts_no_workflow(b2b: B2B) -> None:
    vendor = await b2b.new_vendor()
    key = str(uuid.uuid4())
    response = await b2b.api.post(
        f"/api/v1/vendor/orders/{uuid.uuid4()}/refund",
        json={"reason": "never bought"},
        headers={**vendor.headers, "Idempotency-Key": key},
    )
    assert response.status_code == 404 and response.json()["code"] == "ORDER_NOT_FOUND", response.text
    await assert_no_workflow(b2b, refund_workflow_id(uuid.uuid5(REFUND_IDS, f"vendor:{vendor.id}:{key}")))


async def test_admin_retry_with_nul_in_its_reason_is_refused_and_a_good_one_is_audited(b2b: B2B) -> None:
    vendor = await b2b.new_vendor(balance=10_000)
    b2b.sim.faults(**{"POST /orders": {"no_bundles_left": True}})
    failed = (await b2b.order(vendor)).json()
    b2b.sim.admin.delete("/faults").raise_for_status()
    assert failed["status"] == "FAILED"
    path = f"/api/v1/admin/orders/{failed['id']}/retry"

    assert_validation_error(await b2b.api.post(path, json={"reason": f"restocked{NUL}"}, headers=b2b.admin))
    assert_validation_error(await b2b.api.post(path, json={"reason": "r" * 1001}, headers=b2b.admin))
    await assert_no_workflow(b2b, order_workflow_id(uuid.UUID(failed["id"]), 2))
    async with b2b.sessions() as session:
        assert (await session.get_one(Order, uuid.UUID(failed["id"]))).status.value == "FAILED"
    assert await audit_rows(b2b, "order.retry", failed["id"]) == []

    retried = await b2b.api.post(path, json={"reason": "supplier\nrestocked"}, headers=b2b.admin)
    assert retried.status_code == 202, retried.text
    [row] = await audit_rows(b2b, "order.retry", failed["id"])
    assert row.reason == "supplier\nrestocked" and row.after and row.after["status"] == "CREATED"
    assert row.ip_address == "127.0.0.1"  # the ASGI client's address
    await b2b.temporal.get_workflow_handle(order_workflow_id(uuid.UUID(failed["id"]), 2)).result()


async def test_audit_rows_carry_the_client_address(b2b: B2B) -> None:
    vendor = await b2b.new_vendor(approve=False)
    assert (await b2b.api.post(f"/api/v1/admin/vendors/{vendor.id}/approve", headers=b2b.admin)).is_success
    [row] = await audit_rows(b2b, "vendor.approved", vendor.id)
    assert row.ip_address == "127.0.0.1"


@pytest.mark.parametrize(
    "path", ["/api/v1/admin/vendors", "/api/v1/admin/orders", "/api/v1/admin/audit-logs", "/api/v1/catalogue"]
)
async def test_page_beyond_int64_is_422(b2b: B2B, path: str) -> None:
    headers = b2b.admin if "/admin/" in path else {}
    for page in (str(TOO_BIG), str(10**30), "200000"):
        assert_validation_error(await b2b.api.get(path, params={"page": page}, headers=headers))


async def test_page_beyond_int64_is_422_for_vendors_too(b2b: B2B) -> None:
    vendor = await b2b.new_vendor()
    for path in ("/api/v1/vendor/orders", "/api/v1/vendor/ledger"):
        response = await b2b.api.get(path, params={"page": str(TOO_BIG)}, headers=vendor.headers)
        assert_validation_error(response)


async def test_amounts_beyond_int64_on_admin_routes_are_422(b2b: B2B) -> None:
    vendor = await b2b.new_vendor()
    admin = b2b.admin
    for amount in (TOO_BIG, -TOO_BIG, 10**15 + 1):
        adjusted = await b2b.api.post(
            f"/api/v1/admin/vendors/{vendor.id}/adjust-balance",
            json={"amount_minor": amount, "reason": "fat finger"},
            headers={**admin, "Idempotency-Key": str(uuid.uuid4())},
        )
        assert_validation_error(adjusted)
    billing = await b2b.api.patch(
        f"/api/v1/admin/vendors/{vendor.id}/billing",
        json={"billing_mode": "POSTPAID", "credit_limit_minor": TOO_BIG},
        headers=admin,
    )
    assert_validation_error(billing)
    created = await b2b.api.post(
        "/api/v1/admin/vendors",
        json={"name": "Big", "contact_email": "big@example.com", "credit_limit_minor": TOO_BIG},
        headers={**admin, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert_validation_error(created)
    refund = await b2b.api.post(
        f"/api/v1/admin/orders/{uuid.uuid4()}/refund",
        json={"reason": "too much", "amount_minor": TOO_BIG},
        headers={**admin, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert_validation_error(refund)
    assert (await b2b.wallet(vendor))["balance_minor"] == 0


async def test_a_webhook_url_longer_than_its_column_is_422(b2b: B2B) -> None:
    owner = await vendor_owner(b2b)
    url = "https://hooks.example.com/" + "a" * 2040  # past the column's 2048, within pydantic's own 2083
    assert_validation_error(await b2b.api.put("/api/v1/vendor/webhook", json={"url": url}, headers=owner))
    shown = await b2b.api.get("/api/v1/vendor/webhook", headers=owner)
    assert shown.status_code == 200 and shown.json()["url"] is None


# -- signed webhooks that do not fit: 400, nothing stored -------------------------------------------------


def stripe_event(**object_fields: Any) -> dict[str, Any]:
    return {
        "id": f"evt_{uuid.uuid4().hex[:20]}",
        "object": "event",
        "type": "payment_intent.succeeded",
        "created": int(time.time()),
        "data": {
            "object": {
                "id": f"pi_{uuid.uuid4().hex[:20]}",
                "object": "payment_intent",
                "amount": 500,
                "currency": "usd",
                "status": "succeeded",
                "metadata": {},
                **object_fields,
            }
        },
    }


async def deliver(b2b: B2B, event: dict[str, Any], at: int | None = None) -> Any:
    body = json.dumps(event).encode()
    timestamp = int(time.time()) if at is None else at
    signature = stripe.WebhookSignature._compute_signature(f"{timestamp}.{body.decode()}", WEBHOOK_SECRET)
    return await b2b.api.post(
        "/api/v1/webhooks/stripe",
        content=body,
        headers={"Stripe-Signature": f"t={timestamp},v1={signature}", "Content-Type": "application/json"},
    )


async def stored_events(b2b: B2B, provider: str) -> int:
    async with b2b.sessions() as session:
        return int(await session.scalar(select(func.count()).where(WebhookEvent.provider == provider)) or 0)


@with_stripe_secret
async def test_signed_stripe_events_that_do_not_fit_are_400_and_store_nothing(b2b: B2B) -> None:
    before = await stored_events(b2b, "stripe")
    long_id = stripe_event()
    long_id["id"] = "evt_" + "x" * 300
    long_type = stripe_event()
    long_type["type"] = "payment_intent." + "y" * 120
    odd_shapes = [stripe_event() for _ in range(3)]
    for event, data in zip(odd_shapes, (["a", "list"], None, "text"), strict=True):
        event["data"] = data
    for event in [
        long_id,
        long_type,
        stripe_event(metadata={"workflow_id": "order-" + "z" * 300}),
        stripe_event(metadata={"note": f"nul{NUL}here"}),
        stripe_event(id="pi_" + "p" * 300),
        stripe_event(amount=TOO_BIG),
        stripe_event(currency="usd" * 50),
    ]:
        response = await deliver(b2b, event)
        assert response.status_code == 400, response.text
        assert response.json()["code"] == "WEBHOOK_PAYLOAD_INVALID"
    assert await stored_events(b2b, "stripe") == before
    fits = await deliver(b2b, stripe_event(metadata={"note": "a" * 500}))
    assert fits.status_code == 200 and fits.json()["status"] == "ignored", fits.text
    # No payment object to act on: refused or kept for operators, never a 500 Stripe redelivers for days.
    answers = [await deliver(b2b, odd) for odd in odd_shapes]
    assert [(a.status_code, a.json().get("code") or a.json().get("status")) for a in answers] == [
        (400, "WEBHOOK_PAYLOAD_INVALID"),  # data a list
        (200, "ignored"),  # data null: nothing to act on
        (400, "WEBHOOK_PAYLOAD_INVALID"),  # data a string
    ]


@with_stripe_secret
async def test_stripe_signatures_dated_in_the_future_are_refused(b2b: B2B) -> None:
    response = await deliver(b2b, stripe_event(), at=int(time.time()) + 3600)
    assert response.status_code == 400 and response.json()["code"] == "WEBHOOK_SIGNATURE_INVALID"
    assert "future" in response.json()["detail"]
    near = await deliver(b2b, stripe_event(), at=int(time.time()) + 60)  # a sender's clock a little fast
    assert near.status_code == 200, near.text


async def test_a_signed_esimgo_callback_with_a_2_70_quantity_is_400_and_starts_nothing(b2b: B2B) -> None:
    before = await stored_events(b2b, "esimgo")
    for bundle in ({"initialQuantity": 2**70}, {"remainingQuantity": -1}, {"name": "n" * 101}):
        body = json.dumps(
            {"iccid": "8944000000000000001", "alertType": "Utilisation", "bundle": {"name": "b", **bundle}}
        ).encode()
        response = await b2b.api.post(
            "/api/v1/webhooks/esimgo",
            content=body,
            headers={"X-Signature-SHA256": sign_callback(body, SIM_API_KEY)},
        )
        assert response.status_code == 400 and response.json()["code"] == "WEBHOOK_PAYLOAD_INVALID"
        await assert_no_workflow(b2b, f"esim-usage-{hashlib.sha256(body).hexdigest()}")
    assert await stored_events(b2b, "esimgo") == before


# -- bad data inside an activity: fails for good, not for ever ---------------------------------------------


@activity.defn(name="test.store_poison")
async def _store_poison(database_url: str) -> None:
    """A value past every edge check that the database refuses, as a bug upstream would let through."""
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session, session.begin():
            session.add(
                AuditLog(actor_type="test", action="poison", target_type="t", target_id="t", reason=NUL)
            )
    finally:
        await engine.dispose()


@workflow.defn(name="TestPoison")
class _PoisonWorkflow:
    @workflow.run
    async def run(self, database_url: str) -> None:
        # Temporal's default policy: retried for ever unless the failure is non-retryable.
        await workflow.execute_activity(
            _store_poison, database_url, start_to_close_timeout=timedelta(seconds=30)
        )


async def test_an_activity_failing_on_bad_data_is_not_retried(b2b: B2B) -> None:
    task_queue = f"poison-{uuid.uuid4().hex[:8]}"
    worker = Worker(
        b2b.temporal,
        task_queue=task_queue,
        workflows=[_PoisonWorkflow],
        activities=[_store_poison],
        interceptors=INTERCEPTORS,  # the production workers' own
        workflow_runner=UnsandboxedWorkflowRunner(),
    )
    async with worker, asyncio.timeout(60):  # without the interceptor it would retry for ever
        with pytest.raises(WorkflowFailureError) as failed:
            await b2b.temporal.execute_workflow(
                _PoisonWorkflow.run, b2b.settings.database_url, id=task_queue, task_queue=task_queue
            )
    cause = failed.value.cause
    assert isinstance(cause, ActivityError) and isinstance(cause.cause, ApplicationError)
    assert cause.cause.type == BAD_DATA and cause.cause.non_retryable
    assert cause.retry_state == RetryState.NON_RETRYABLE_FAILURE
