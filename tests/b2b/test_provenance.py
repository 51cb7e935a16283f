"""Request provenance (issue 14): the caller's address and user agent on orders, refunds and audit rows,
shown to admins; the address is a forwarded one only when the peer is a trusted proxy."""

from __future__ import annotations

import uuid

import httpx
from starlette.types import Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from api.client_address import USER_AGENT_MAX, ClientAddressMiddleware, clean_user_agent
from api.serve import server_config
from tests.b2b.conftest import B2B
from tests.conftest import make_settings
from ttelgo.audit import client_address, user_agent
from ttelgo.models import Order, Refund

CALLER = ("203.0.113.7", 40_000)
AGENT = "BookingBackend/2.1 (+https://wanderlust.example.com)"


async def _seen(scope: Scope, receive: Receive, send: Send) -> None:
    """An app that answers what the audit trail would record for this request."""
    body = f"{client_address.get()}|{user_agent.get()}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def _recorded(config_trusted: str, peer: str, headers: dict[str, str]) -> str:
    config = server_config(make_settings(trusted_proxies=config_trusted))
    assert config.proxy_headers
    # The same wrapping uvicorn applies when it loads the app with this config.
    app = ProxyHeadersMiddleware(ClientAddressMiddleware(_seen), trusted_hosts=config.forwarded_allow_ips)
    transport = httpx.ASGITransport(app=app, client=(peer, 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        return (await client.get("/", headers=headers)).text


async def test_the_forwarded_address_is_believed_only_from_a_trusted_proxy() -> None:
    forwarded = {"X-Forwarded-For": "198.51.100.23", "User-Agent": AGENT}
    assert await _recorded("10.0.0.0/8", "10.1.2.3", forwarded) == f"198.51.100.23|{AGENT}"
    assert await _recorded("10.0.0.0/8", "192.0.2.50", forwarded) == f"192.0.2.50|{AGENT}"


def test_the_user_agent_is_one_bounded_line() -> None:
    assert clean_user_agent("evil\r\nX-Injected: 1\x00\x7f") == "evilX-Injected: 1"
    assert clean_user_agent("x" * 10_000) == "x" * USER_AGENT_MAX
    assert clean_user_agent("\x01\x02") is None and clean_user_agent(None) is None


async def test_orders_refunds_and_audit_rows_carry_the_callers_address_and_agent(b2b: B2B) -> None:
    vendor = await b2b.new_vendor(balance=10_000)
    app = b2b.api._transport.app  # type: ignore[attr-defined]  # the test's app, reached from another peer
    transport = httpx.ASGITransport(app=app, client=CALLER)
    headers = {**vendor.headers, "User-Agent": AGENT}
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test", headers=headers) as caller:
        placed = await caller.post(
            "/api/v1/vendor/orders",
            params={"wait": 15},
            json={"bundle_code": "esim_1GB_7D_FR_V2", "quantity": 1},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        assert placed.status_code == 201, placed.text
        order_id = placed.json()["id"]
        refunded = await caller.post(
            f"/api/v1/vendor/orders/{order_id}/refund",
            json={"reason": "the traveller cancelled"},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        assert refunded.status_code == 201, refunded.text
        refund_id = refunded.json()["id"]

    async with b2b.sessions() as session:
        order = await session.get_one(Order, uuid.UUID(order_id))
        refund = await session.get_one(Refund, uuid.UUID(refund_id))
    assert (order.client_ip, order.user_agent) == (CALLER[0], AGENT)
    assert (refund.client_ip, refund.user_agent) == (CALLER[0], AGENT)

    shown = (await b2b.api.get(f"/api/v1/admin/orders/{order_id}", headers=b2b.admin)).json()
    assert (shown["client_ip"], shown["user_agent"]) == (CALLER[0], AGENT)
    assert (shown["refunds"][0]["client_ip"], shown["refunds"][0]["user_agent"]) == (CALLER[0], AGENT)
    one = (await b2b.api.get(f"/api/v1/admin/refunds/{refund_id}", headers=b2b.admin)).json()
    assert (one["client_ip"], one["user_agent"]) == (CALLER[0], AGENT)
    trail = await b2b.api.get(
        "/api/v1/admin/audit-logs",
        params={"target_id": order_id, "action": "order.refund"},
        headers=b2b.admin,
    )
    [entry] = trail.json()["items"]
    assert (entry["ip_address"], entry["user_agent"]) == (CALLER[0], AGENT)

    # The admin's own actions carry the admin's request, not the vendor's.
    await b2b.api.patch(f"/api/v1/admin/vendors/{vendor.id}", json={"name": "Renamed"}, headers=b2b.admin)
    [rename] = (
        await b2b.api.get(
            "/api/v1/admin/audit-logs",
            params={"target_id": vendor.id, "action": "vendor.update"},
            headers=b2b.admin,
        )
    ).json()["items"]
    assert rename["ip_address"] == "127.0.0.1" and rename["user_agent"].startswith("python-httpx/")
