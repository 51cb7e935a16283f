"""The OpenAPI document declares its security schemes, and each operation the ones it really requires:
every operation that declares one refuses a caller without credentials (401), every operation that
declares none does not, and one whose credentials are optional (an empty requirement, `{}`, among its
schemes) serves a caller without any but refuses bad ones."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from api.app import create_app
from tests.conftest import make_settings
from ttelgo.sandbox.processes import free_port

SCHEMES = {"bearerAuth", "apiKeyAuth"}
# Credentials that must be refused wherever their scheme is accepted, even optionally. (A customer's bad
# token is not among them: the public catalogue serves it as an anonymous caller.)
BAD_CREDENTIALS = {
    "apiKeyAuth": {"X-API-Key": "ttg_000000000000_nope"},
    "bearerAuth": {"Authorization": "Bearer ttg_000000000000_nope"},
}
CALLER_CODES = {"UNAUTHENTICATED", "TOKEN_INVALID", "TOKEN_EXPIRED", "API_KEY_INVALID", "SESSION_REVOKED"}


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(
        database_url=database_url, temporal_address=f"127.0.0.1:{free_port()}", rate_limit_enabled=False
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        # A caller from outside: some dev conveniences trust loopback callers.
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            yield client


def _concrete(path: str) -> str:
    """A callable URL for a templated path (ids are made up: credentials are checked before them)."""
    return re.sub(r"\{[^}]+\}", lambda m: str(uuid.uuid4()) if m.group().endswith("id}") else "FR", path)


async def test_protected_operations_declare_their_schemes_and_public_ones_none(
    api: httpx.AsyncClient,
) -> None:
    document = (await api.get("/openapi.json")).json()
    assert set(document["components"]["securitySchemes"]) >= SCHEMES
    declared, undeclared, optional = [], [], []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            requirements = operation.get("security", [])
            schemes = {name for requirement in requirements for name in requirement}
            assert schemes <= SCHEMES, (method, path, schemes)
            if not schemes:
                undeclared.append((method, path, schemes))
            else:
                (optional if {} in requirements else declared).append((method, path, schemes))
    assert {("post", "/api/v1/vendor/orders"): {"apiKeyAuth", "bearerAuth"}}.items() <= {
        (method, path): schemes for method, path, schemes in declared
    }.items()
    for method, path, _ in declared:
        response = await api.request(method, _concrete(path))
        assert response.status_code == 401, (method, path, response.status_code)
        assert response.headers["content-type"] == "application/problem+json"
    assert ("get", "/api/v1/catalogue") in {(method, path) for method, path, _ in optional}
    for method, path, schemes in optional:
        anonymous = await api.request(method, _concrete(path))
        assert anonymous.status_code != 401, (method, path)
        # A bad credential of a scheme it accepts is refused, not served as anonymous.
        for scheme in schemes & BAD_CREDENTIALS.keys():
            refused = await api.request(method, _concrete(path), headers=BAD_CREDENTIALS[scheme])
            assert refused.status_code == 401, (method, path, scheme, refused.status_code)
            assert refused.headers["content-type"] == "application/problem+json"
    for method, path, _ in undeclared:
        if path == "/readyz":  # asks Temporal, which this test does not run
            continue
        response = await api.request(method, _concrete(path))
        # (A signed webhook may answer 401 too, for its signature: that is no caller credential.)
        assert response.status_code != 401 or response.json()["code"] not in CALLER_CODES, (method, path)
