"""Who is on the other end of the connection, for the audit trail (`audit_logs.ip_address`).

The address is the connection's peer as the server reports it: behind a proxy listed in TRUSTED_PROXIES,
the client it forwarded for (uvicorn's proxy headers, `api/serve.py`)."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from ttelgo.audit import client_address


class ClientAddressMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            peer = scope.get("client")
            client_address.set(peer[0] if peer else None)
        await self.app(scope, receive, send)
