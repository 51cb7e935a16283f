"""The webhook router is matched before every other (issue 16): its routes still pass through the whole
middleware stack, as every route does: security headers, the request id, the body-size limit, problem+json
errors and the route-labelled request metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from api.app import create_app
from api.security_headers import API_CSP
from tests.conftest import make_settings
from ttelgo.sandbox.processes import free_port

STRIPE = "/api/v1/webhooks/stripe"


@pytest.fixture
async def client(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(
        database_url=database_url,
        temporal_address=f"127.0.0.1:{free_port()}",
        stripe_webhook_secret="whsec_route",
        max_request_body_bytes=4096,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            yield c


async def test_the_webhook_routes_keep_every_middleware(client: httpx.AsyncClient) -> None:
    forged = await client.post(
        STRIPE, content=b'{"id": "evt_1", "type": "x"}', headers={"Stripe-Signature": "t=1,v1=00"}
    )
    too_big = await client.post(STRIPE, content=b"{" * 5000, headers={"Stripe-Signature": "t=1,v1=00"})

    assert forged.status_code == 400 and forged.json()["code"] == "WEBHOOK_SIGNATURE_INVALID"
    assert too_big.status_code == 413 and too_big.json()["code"] == "PAYLOAD_TOO_LARGE"
    for response in (forged, too_big):
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Content-Security-Policy"] == API_CSP
        assert response.headers["X-Request-ID"]
    metrics = (await client.get("/metrics")).text
    assert f'http_requests_total{{method="POST",route="{STRIPE}",status="400"}} 1.0' in metrics
