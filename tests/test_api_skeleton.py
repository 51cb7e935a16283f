"""The API skeleton: health, readiness naming what failed, metrics, problem+json, request ids, docs."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from tests.conftest import make_settings
from ttelgo.errors import AppError
from ttelgo.sandbox.processes import free_port


async def _client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


class Echo(BaseModel):
    quantity: int


def _with_probe_routes(app: FastAPI) -> FastAPI:
    """Routes that exercise the shared error handling the real routers rely on."""

    @app.post("/probe/validate")
    async def validate(body: Echo) -> Echo:
        return body

    @app.get("/probe/app-error")
    async def app_error() -> None:
        raise AppError("INSUFFICIENT_FUNDS", "wallet has 5.00 USD, order costs 9.99 USD")

    @app.get("/probe/crash")
    async def crash() -> None:
        raise RuntimeError("secret internal detail")

    return app


@pytest.fixture
async def client(database_url: str, temporal_env: WorkflowEnvironment) -> AsyncIterator[httpx.AsyncClient]:
    target = temporal_env.client.service_client.config.target_host
    app = _with_probe_routes(create_app(make_settings(database_url=database_url, temporal_address=target)))
    async for c in _client(app):
        yield c


async def test_healthz_and_readyz_when_everything_is_up(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"database": "ok", "temporal": "ok"}}


async def test_readyz_names_temporal_when_it_is_down(database_url: str) -> None:
    app = create_app(make_settings(database_url=database_url, temporal_address=f"127.0.0.1:{free_port()}"))
    async for client in _client(app):
        response = await client.get("/readyz")
        assert response.status_code == 503
        checks = response.json()["checks"]
        assert checks["database"] == "ok"
        assert checks["temporal"].startswith("failed")


async def test_readyz_names_the_database_when_it_is_down(temporal_env: WorkflowEnvironment) -> None:
    target = temporal_env.client.service_client.config.target_host
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nowhere"
    async for client in _client(create_app(make_settings(database_url=url, temporal_address=target))):
        response = await client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["checks"]["database"].startswith("failed")
        assert response.json()["checks"]["temporal"] == "ok"


async def test_metrics_count_requests_by_route_template_and_status(client: httpx.AsyncClient) -> None:
    await client.get("/healthz")
    await client.get("/healthz")
    await client.get("/no/such/route")
    body = (await client.get("/metrics")).text
    assert 'http_requests_total{method="GET",route="/healthz",status="200"} 2.0' in body
    assert 'http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in body
    assert 'http_request_duration_seconds_count{method="GET",route="/healthz",status="200"} 2.0' in body


async def test_errors_are_problem_json_with_stable_codes(client: httpx.AsyncClient) -> None:
    missing = await client.get("/no/such/route")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["code"] == "NOT_FOUND"

    invalid = await client.post("/probe/validate", json={"quantity": "many"})
    assert invalid.status_code == 422
    body = invalid.json()
    assert body["code"] == "VALIDATION_ERROR" and body["number"] == 1001
    assert body["errors"][0]["location"] == ["body", "quantity"]

    business = await client.get("/probe/app-error")
    assert business.status_code == 402
    assert business.json()["code"] == "INSUFFICIENT_FUNDS"
    assert business.json()["detail"] == "wallet has 5.00 USD, order costs 9.99 USD"

    wrong_method = await client.delete("/healthz")
    assert wrong_method.status_code == 405 and wrong_method.json()["code"] == "METHOD_NOT_ALLOWED"


async def test_unhandled_errors_hide_details_but_keep_the_request_id(client: httpx.AsyncClient) -> None:
    response = await client.get("/probe/crash", headers={"X-Request-ID": "trace-123"})
    assert response.status_code == 500
    body = response.json()
    assert body["code"] == "INTERNAL_ERROR"
    assert "secret" not in response.text
    assert body["request_id"] == "trace-123" == response.headers["X-Request-ID"]


async def test_request_id_is_echoed_generated_or_replaced(client: httpx.AsyncClient) -> None:
    given = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert given.headers["X-Request-ID"] == "abc-123"
    generated = (await client.get("/healthz")).headers["X-Request-ID"]
    assert len(generated) == 32
    unsafe = await client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    assert unsafe.headers["X-Request-ID"] != "bad id\twith spaces"


async def test_request_id_reaches_log_lines(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    await client.get("/probe/crash", headers={"X-Request-ID": "log-me-42"})
    records = [r for r in caplog.records if r.name == "api.problems"]
    assert records and getattr(records[0], "request_id", None) == "log-me-42"


async def test_openapi_docs_are_served(client: httpx.AsyncClient) -> None:
    assert (await client.get("/docs")).status_code == 200
    spec = (await client.get("/openapi.json")).json()
    assert {"/healthz", "/readyz", "/metrics", "/api/v1/errors"} <= set(spec["paths"])
    catalogue = (await client.get("/api/v1/errors")).json()
    assert {
        "code": "INSUFFICIENT_FUNDS",
        "number": 13000,
        "status": 402,
        "title": "Insufficient funds",
        "family": "business",
    } in catalogue
