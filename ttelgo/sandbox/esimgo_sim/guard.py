"""ASGI middleware in front of the eSIM Go routes: rate limit, API key, request stats and injected faults.

It runs before FastAPI parses anything, so a faulted order never reaches the state (nothing is charged), and
it stamps the X-Ratelimit-* headers on every API response, errors included.
"""

import asyncio
import hmac

from fastapi.routing import APIRoute, APIRouter
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import error_response
from .faults import FaultKind
from .runtime import Simulator

API_PREFIX = "/v2.4"
API_KEY_HEADER = b"x-api-key"


def endpoint_templates(router: APIRouter) -> set[str]:
    """Fault/stat keys of every API route, e.g. "GET /esims/{iccid}"."""
    return {f"{m} {r.path}" for r in router.routes if isinstance(r, APIRoute) for m in r.methods}


def endpoint_key(router: APIRouter, scope: Scope) -> tuple[str, bool]:
    """The route template key for this request and whether it names a real route."""
    method, path = scope["method"], scope["path"].removeprefix(API_PREFIX)
    unprefixed = {**scope, "path": path, "root_path": ""}
    for route in router.routes:
        if isinstance(route, APIRoute) and route.matches(unprefixed)[0] is Match.FULL:
            return f"{method} {route.path}", True
    return f"{method} {path}", False


async def buffer_body(receive: Receive) -> Receive:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    pending: list[Message] = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


class ApiGuard:
    def __init__(self, app: ASGIApp, sim: Simulator, router: APIRouter) -> None:
        self.app = app
        self.sim = sim
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not (path == API_PREFIX or path.startswith(API_PREFIX + "/")):
            await self.app(scope, receive, send)
            return
        sim = self.sim
        key, known = endpoint_key(self.router, scope)
        presented = dict(scope["headers"]).get(API_KEY_HEADER, b"").decode("latin-1")
        extra_headers: list[tuple[bytes, bytes]] = []

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + extra_headers
                sim.stats.responses[key][str(message["status"])] += 1
            await send(message)

        sim.stats.requests[key] += 1
        if sim.limiter.enabled:
            # Counted per presented key, before auth, so every API response carries the headers.
            decision = sim.limiter.hit(presented)
            extra_headers.extend((k.lower().encode(), v.encode()) for k, v in decision.headers().items())
            if not decision.allowed:
                sim.stats.rate_limited += 1
                await error_response(429, "Rate limit exceeded", {"Retry-After": "1"})(
                    scope, receive, send_with_headers
                )
                return
        if not presented or not hmac.compare_digest(presented.encode(), sim.config.api_key.encode()):
            message = "Missing X-API-Key header" if not presented else "Invalid API key"
            await error_response(401, message)(scope, receive, send_with_headers)
            return
        if known:
            fault = sim.faults.decide(key)
            if fault.delay_s:
                await asyncio.sleep(fault.delay_s)
            if fault.kind is not None:
                sim.stats.faults[f"{key} {fault.kind.value}"] += 1
                if fault.kind is FaultKind.TIMEOUT:
                    if fault.proceed_after_hang:
                        # Read the body now: once the client gives up, it could no longer be received.
                        receive = await buffer_body(receive)
                    await asyncio.sleep(fault.hang_s)
                if not fault.proceed_after_hang:
                    await error_response(fault.status, fault.message, fault.headers)(
                        scope, receive, send_with_headers
                    )
                    return
        await self.app(scope, receive, send_with_headers)
