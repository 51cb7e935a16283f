"""Who is on the other end of the connection, for the audit trail and the order and refund records
(`ip_address`/`client_ip`, `user_agent`).

The address is the connection's peer as the server reports it: behind a proxy listed in TRUSTED_PROXIES,
the client it forwarded for (uvicorn's proxy headers, `api/serve.py`). The user agent is whatever the
client says, so it is kept to one bounded line of printable text."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from api.schemas.fields import LINE_CONTROL_RE
from ttelgo.audit import client_address, user_agent

USER_AGENT_MAX = 512  # the columns' length


def clean_user_agent(raw: str | None) -> str | None:
    if raw is None:
        return None
    return LINE_CONTROL_RE.sub("", raw)[:USER_AGENT_MAX] or None


class ClientAddressMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            peer = scope.get("client")
            client_address.set(peer[0] if peer else None)
            user_agent.set(clean_user_agent(Headers(scope=scope).get("user-agent")))
        await self.app(scope, receive, send)
