"""HTTP hygiene (issue 15): body-size limit and read deadline, bounded metrics labels, security and caching
headers, CORS allow-list, docs and metrics switches, and an OpenAPI document that declares what is real."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Response

from api.app import create_app
from api.openapi import Problem
from api.security_headers import API_CSP
from tests.conftest import make_settings
from ttelgo.sandbox.processes import free_port
from ttelgo.settings import Settings

MiB = 1024 * 1024
LOGIN = "/api/v1/auth/login"
ALLOWED_ORIGIN = "https://app.example.com"


def _settings(database_url: str, **overrides: object) -> Settings:
    return make_settings(database_url=database_url, temporal_address=f"127.0.0.1:{free_port()}", **overrides)


def _production_settings(database_url: str, **overrides: object) -> Settings:
    """Production mode with every setting it insists on given a placeholder (none is contacted here)."""
    settings = _settings(database_url, ttelgo_env="production", **overrides)
    required = {name.lower(): "placeholder" for name in settings.missing_for_production()}
    return _settings(database_url, ttelgo_env="production", **required, **overrides)


def _with_probe_routes(app: FastAPI) -> FastAPI:
    @app.get("/probe/crash")
    async def crash() -> None:
        raise RuntimeError("a bug")

    @app.get("/probe/cached")
    async def cached() -> Response:  # as the QR-code routes answer: cacheable unless we say otherwise
        return Response(b"png", media_type="image/png", headers={"Cache-Control": "private, max-age=86400"})

    return app


async def _clients(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


@pytest.fixture
async def app(database_url: str) -> AsyncIterator[FastAPI]:
    app = _with_probe_routes(create_app(_settings(database_url, request_read_timeout_seconds=0.5)))
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


# -- raw ASGI, to see exactly how much of a body the app pulls -------------------------------------------
class Upload:
    """An ASGI `receive` that streams `total` bytes in chunks (never, after `stall_after` of them) and
    counts what the app consumed."""

    def __init__(self, total: int, chunk: int = 64 * 1024, stall_after: int | None = None) -> None:
        self.total, self.chunk, self.stall_after = total, chunk, stall_after
        self.consumed = 0
        self.calls = 0

    async def __call__(self) -> dict[str, Any]:
        if self.stall_after is not None and self.calls >= self.stall_after:
            await asyncio.Event().wait()  # the client stopped sending
        self.calls += 1
        size = min(self.chunk, self.total - self.consumed)
        self.consumed += size
        return {"type": "http.request", "body": b"{" * size, "more_body": self.consumed < self.total}


async def _asgi(
    app: FastAPI, method: str, path: str, headers: dict[str, str], receive: Callable[[], Any]
) -> tuple[int, dict[str, str], bytes]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in {"host": "test", **headers}.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("test", 80),
        "state": {},
    }
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asyncio.wait_for(app(scope, receive, send), timeout=60)  # a hang guard, not a timing claim
    start = next(m for m in sent if m["type"] == "http.response.start")
    response_headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], response_headers, body


async def test_a_100_mb_chunked_login_body_is_refused_after_the_limit_not_read_whole(app: FastAPI) -> None:
    upload = Upload(total=100 * MiB)
    status, headers, body = await _asgi(
        app, "POST", LOGIN, {"content-type": "application/json", "transfer-encoding": "chunked"}, upload
    )
    assert status == 413
    assert headers["content-type"] == "application/problem+json"
    assert b'"code":"PAYLOAD_TOO_LARGE"' in body
    assert upload.consumed <= MiB + upload.chunk  # stopped at the limit, not at 100 MB
    assert headers["connection"] == "close"  # the server stops reading the rest


async def test_a_declared_oversized_body_is_refused_before_a_byte_is_read(app: FastAPI) -> None:
    upload = Upload(total=100 * MiB)
    status, headers, body = await _asgi(
        app, "POST", LOGIN, {"content-type": "application/json", "content-length": str(100 * MiB)}, upload
    )
    assert status == 413 and b'"code":"PAYLOAD_TOO_LARGE"' in body
    assert upload.calls == 0
    assert headers["connection"] == "close"


async def test_a_body_that_stops_arriving_is_answered_408_and_the_connection_closed(app: FastAPI) -> None:
    upload = Upload(total=1000, chunk=1, stall_after=1)  # announces 1000 bytes, sends one
    status, headers, body = await _asgi(
        app, "POST", LOGIN, {"content-type": "application/json", "content-length": "1000"}, upload
    )
    assert status == 408
    problem = Problem.model_validate_json(body)
    assert (problem.code, problem.number) == ("REQUEST_TIMEOUT", 1020)
    assert headers["connection"] == "close"


async def test_an_answer_given_before_the_body_was_read_closes_the_connection(app: FastAPI) -> None:
    upload = Upload(total=1000, chunk=1, stall_after=0)
    status, headers, _ = await _asgi(app, "POST", "/no/such/route", {"content-length": "1000"}, upload)
    assert status == 404 and headers["connection"] == "close"


async def test_bodies_within_the_limit_still_work(client: httpx.AsyncClient) -> None:
    response = await client.post(LOGIN, json={"email": "nobody@example.com", "password": "x" * 12})
    assert response.status_code == 401
    assert "connection" not in response.headers


# -- /metrics -----------------------------------------------------------------------------------------------
def _request_series(metrics_text: str) -> set[str]:
    return set(re.findall(r"^http_requests_total\{([^}]*)\}", metrics_text, re.MULTILINE))


async def test_made_up_methods_add_no_metric_series(client: httpx.AsyncClient) -> None:
    await client.get("/healthz")
    before = _request_series((await client.get("/metrics")).text)
    for n in range(20):
        await client.request(f"BREW{n}", "/healthz")
        await client.request(f"PROPFIND{n}", f"/made/up/{n}")
    after = _request_series((await client.get("/metrics")).text)
    assert after - before <= {
        'method="OTHER",route="/healthz",status="405"',
        'method="OTHER",route="unmatched",status="404"',
        'method="GET",route="/metrics",status="200"',
    }


async def test_metrics_need_the_token_when_one_is_set(database_url: str) -> None:
    app = create_app(_settings(database_url, metrics_token="scrape-secret"))
    async for client in _clients(app):
        assert (await client.get("/metrics")).status_code == 401
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["code"] == "UNAUTHENTICATED"
        right = await client.get("/metrics", headers={"Authorization": "Bearer scrape-secret"})
        assert right.status_code == 200 and "http_requests_total" in right.text


async def test_production_closes_metrics_and_docs_by_default(database_url: str) -> None:
    async for client in _clients(create_app(_production_settings(database_url))):
        assert (await client.get("/metrics")).status_code == 401
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert (await client.get(path)).status_code == 404
        assert (await client.get("/healthz")).headers["Strict-Transport-Security"].startswith("max-age=")
    opened = _production_settings(database_url, api_docs_enabled=True)
    async for client in _clients(create_app(opened)):
        assert (await client.get("/openapi.json")).status_code == 200


async def test_docs_can_be_switched_off_outside_production(database_url: str) -> None:
    async for client in _clients(create_app(_settings(database_url, api_docs_enabled=False))):
        assert (await client.get("/docs")).status_code == 404
        assert (await client.get("/openapi.json")).status_code == 404


# -- security and caching headers ---------------------------------------------------------------------------
async def test_every_response_carries_the_security_headers(client: httpx.AsyncClient) -> None:
    for response in (
        await client.get("/healthz"),
        await client.get("/no/such/route"),
        await client.post(LOGIN, json={}),
        await client.get("/probe/crash"),  # answered by Starlette's outermost error middleware
    ):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.headers["Content-Security-Policy"] == API_CSP
        assert "Strict-Transport-Security" not in response.headers  # no TLS outside production
    for page in ("/docs", "/redoc"):  # their own policy, that lets them run: tests/test_offline_docs.py
        assert "script-src 'self'" in (await client.get(page)).headers["Content-Security-Policy"]


async def test_token_and_credentialed_answers_are_never_stored(client: httpx.AsyncClient) -> None:
    login = await client.post(LOGIN, json={"email": "nobody@example.com", "password": "x" * 12})
    assert login.headers["Cache-Control"] == "no-store"
    credentialed = await client.get("/probe/cached", headers={"Authorization": "Bearer any"})
    assert credentialed.headers["Cache-Control"] == "no-store"
    api_key = await client.get("/probe/cached", headers={"X-API-Key": "ttg_any"})
    assert api_key.headers["Cache-Control"] == "no-store"
    public = await client.get("/probe/cached")  # a public route keeps the caching it chose
    assert public.headers["Cache-Control"] == "private, max-age=86400"


# -- CORS ---------------------------------------------------------------------------------------------------
def _preflight(origin: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, idempotency-key, x-api-key",
    }


async def test_cors_allows_only_the_listed_origins(database_url: str) -> None:
    settings = _settings(database_url, cors_allowed_origins=f" {ALLOWED_ORIGIN}/ , https://admin.example.com")
    async for client in _clients(create_app(settings)):
        allowed = await client.options("/api/v1/orders", headers=_preflight(ALLOWED_ORIGIN))
        assert allowed.status_code == 200
        assert allowed.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
        granted = allowed.headers["Access-Control-Allow-Headers"].lower()
        assert {"authorization", "content-type", "idempotency-key", "x-api-key"} <= set(granted.split(", "))

        refused = await client.options("/api/v1/orders", headers=_preflight("https://evil.example.com"))
        assert refused.status_code == 400
        assert "Access-Control-Allow-Origin" not in refused.headers

        simple = await client.get("/healthz", headers={"Origin": ALLOWED_ORIGIN})
        assert simple.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
        exposed = {h.strip().lower() for h in simple.headers["Access-Control-Expose-Headers"].split(",")}
        assert {"location", "retry-after", "ratelimit", "ratelimit-policy", "x-request-id"} <= exposed


async def test_cors_is_off_without_an_allow_list(client: httpx.AsyncClient) -> None:
    preflight = await client.options("/api/v1/orders", headers=_preflight(ALLOWED_ORIGIN))
    assert "Access-Control-Allow-Origin" not in preflight.headers
    simple = await client.get("/healthz", headers={"Origin": ALLOWED_ORIGIN})
    assert "Access-Control-Allow-Origin" not in simple.headers


# -- OpenAPI ------------------------------------------------------------------------------------------------
CREATING_OPERATIONS = {
    ("post", "/api/v1/orders"),
    ("post", "/api/v1/vendor/orders"),
    ("post", "/api/v1/esims/{iccid}/topups"),
    ("post", "/api/v1/vendor/esims/{iccid}/topups"),
    ("post", "/api/v1/vendor/orders/{order_id}/refund"),
    ("post", "/api/v1/vendor/wallet/topup/intents"),
    ("post", "/api/v1/admin/orders/{order_id}/refund"),
    ("post", "/api/v1/admin/vendors"),
    ("post", "/api/v1/admin/vendors/{vendor_id}/adjust-balance"),
    ("post", "/api/v1/admin/reconciliation/runs"),
    ("post", "/api/v1/admin/invoices/run"),
}


async def test_openapi_declares_the_idempotency_key_where_it_is_required(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    declaring = {
        (method, path)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if any(p["name"] == "Idempotency-Key" for p in operation.get("parameters", []))
    }
    assert declaring == CREATING_OPERATIONS
    parameter = next(
        p for p in spec["paths"]["/api/v1/orders"]["post"]["parameters"] if p["name"] == "Idempotency-Key"
    )
    assert parameter["in"] == "header" and parameter["required"] is True
    assert parameter["schema"]["maxLength"] == 255


async def test_openapi_declares_errors_as_problem_json(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    problem_ref = {"$ref": "#/components/schemas/Problem"}
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert {"4XX", "5XX"} <= set(responses), (method, path)
            for status, response in responses.items():
                if status[0] not in "45" or (path, status) == ("/readyz", "503"):
                    continue
                assert response["content"] == {"application/problem+json": {"schema": problem_ref}}, (
                    method,
                    path,
                    status,
                )
    # The schema fits what the API answers, a validation error included.
    invalid = await client.post(LOGIN, json={"email": 5})
    assert invalid.status_code == 422
    assert Problem.model_validate(invalid.json()).errors
