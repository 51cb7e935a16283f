"""Schemathesis over the API's own OpenAPI document, in-process (ASGI) on the real stack (PostgreSQL,
Temporal with a worker, the eSIM Go simulator, localstripe), once for each kind of caller: nobody, a
customer, a vendor API key, a vendor team member, an admin. Valid and invalid inputs alike must never
answer 5xx, and every answer must match what the document declares for it.

Bounded: FUZZ_EXAMPLES cases per operation and caller (default 6), a couple of minutes on a small machine.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import response_schema_conformance
from sqlalchemy.ext.asyncio import create_async_engine
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from tests.b2b.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.b2c.conftest import STRIPE_KEY, WEBHOOK_SECRET, localstripe  # noqa: F401 - the fixture
from tests.support.esimgo import SimHandle
from tests.support.stack import api_client, running_worker, stack_settings
from ttelgo.admins import ensure_admin
from ttelgo.db import session_factory

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "6"))
PASSWORD = "a long enough password"


@dataclass
class Findings:
    calls: int = 0
    server_errors: list[str] = field(default_factory=list)
    nonconforming: list[str] = field(default_factory=list)


async def _callers(api: Any) -> dict[str, dict[str, str]]:
    """Headers for each kind of caller, made through the API itself."""

    def bearer(response: Any) -> dict[str, str]:
        assert response.status_code in (200, 201), response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    admin = bearer(
        await api.post("/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    )
    customer = bearer(
        await api.post(
            "/api/v1/auth/register",
            json={"email": f"{uuid.uuid4().hex[:10]}@example.com", "password": PASSWORD},
        )
    )
    owner_email = f"{uuid.uuid4().hex[:10]}@example.com"
    vendor = await api.post(
        "/api/v1/admin/vendors",
        json={
            "name": "Fuzz Shop",
            "contact_email": owner_email,
            "owner_email": owner_email,
            "owner_password": PASSWORD,
        },
        headers={**admin, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert vendor.status_code == 201, vendor.text
    vendor_id = vendor.json()["id"]
    assert (await api.post(f"/api/v1/admin/vendors/{vendor_id}/approve", headers=admin)).is_success
    key = await api.post(f"/api/v1/admin/vendors/{vendor_id}/api-keys", json={"name": "fuzz"}, headers=admin)
    assert key.status_code == 201, key.text
    member = bearer(
        await api.post("/api/v1/vendor/auth/login", json={"email": owner_email, "password": PASSWORD})
    )
    return {
        "anonymous": {},
        "customer": customer,
        "vendor API key": {"X-API-Key": key.json()["key"]},
        "vendor user": member,
        "admin": admin,
    }


def _fuzz(schema: Any, callers: dict[str, dict[str, str]]) -> Findings:
    """Runs in a thread: schemathesis calls the app through its own event loop (with the app's lifespan)."""
    findings = Findings()
    operations = [result.ok() for result in schema.get_all_operations()]
    for who, headers in callers.items():
        for operation in operations:
            _fuzz_operation(operation, who, headers, findings)
    return findings


def _fuzz_operation(operation: Any, who: str, headers: dict[str, str], findings: Findings) -> None:
    strategy = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(GenerationMode.NEGATIVE)

    @hypothesis.given(case=strategy)
    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # collected, not shrunk: every finding is reported
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        response = case.call(headers=headers)
        findings.calls += 1
        where = f"{who}: {case.method} {case.formatted_path} -> {response.status_code}"
        for check, found in (
            (not_a_server_error, findings.server_errors),
            (response_schema_conformance, findings.nonconforming),
        ):
            _check(case, response, check, found, where)

    run()


def _check(case: Any, response: Any, check: Callable[..., Any], found: list[str], where: str) -> None:
    try:
        case.validate_response(response, checks=[check])
    except (Failure, FailureGroup) as failure:
        found.append(f"{where}: {str(failure).strip().splitlines()[0][:300]}")


async def test_no_operation_answers_5xx_for_any_caller(
    synced_database_url: str,
    temporal_env: WorkflowEnvironment,
    esimgo_sim: SimHandle,
    task_queue: str,
    localstripe: str,  # noqa: F811 - the fixture imported above
) -> None:
    settings = stack_settings(
        synced_database_url,
        temporal_env.client,
        esimgo_sim,
        task_queue,
        stripe_secret_key=STRIPE_KEY,
        stripe_api_base=localstripe,
        stripe_webhook_secret=WEBHOOK_SECRET,
    )
    engine = create_async_engine(synced_database_url)
    try:
        async with session_factory(engine)() as session:
            await ensure_admin(session, ADMIN_EMAIL, ADMIN_PASSWORD)
        async with running_worker(settings, temporal_env.client), api_client(settings) as api:
            callers = await _callers(api)
            schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(settings))
            try:
                findings = await asyncio.to_thread(_fuzz, schema, callers)
            finally:
                await asyncio.to_thread(shutdown_lifespans)
    finally:
        await engine.dispose()

    print(f"schemathesis: {findings.calls} calls, {len(findings.server_errors)} server errors")
    assert findings.calls > 0
    assert findings.server_errors == [], "\n".join(findings.server_errors)
    assert findings.nonconforming == [], "\n".join(findings.nonconforming[:40])
