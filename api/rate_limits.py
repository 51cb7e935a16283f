"""ASGI middleware: each request counted against one rate-limit policy, 429 problem+json past it.

The policy follows from the path and the caller (`api.callers`): logins, registration and password reset
count per client IP under the strict `auth` policy; otherwise a vendor's keys and team count together
(`vendor`, or the limit an admin set for that vendor), a customer or staff token per account (`user`), and
requests without valid credentials per client IP (`anonymous`). Inbound webhooks (Stripe and eSIM Go sign
theirs, and must never be turned away), health checks and metrics are not limited. Every limited answer
carries the RateLimit / RateLimit-Policy headers; a refused one also Retry-After.
"""

from __future__ import annotations

import ipaddress

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.callers import Caller
from api.problems import problem
from ttelgo.errors import CATALOGUE
from ttelgo.ratelimit import Policy, RateLimiter

AUTH_PATHS = frozenset({"/api/v1/auth/login", "/api/v1/auth/register", "/api/v1/vendor/auth/login"})
# Asking for a password reset, and confirming it (customers and staff; vendor team members).
AUTH_PREFIXES = ("/api/v1/auth/password-reset", "/api/v1/vendor/auth/password-reset")
UNLIMITED_PREFIXES = ("/api/v1/webhooks/", "/healthz", "/readyz", "/metrics")


def ip_bucket(client_ip: str) -> str:
    """Who an address counts as: itself, or for IPv6 its /64, which one subscriber holds whole (else every
    address in it would get its own allowance)."""
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return client_ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def policy_for(limiter: RateLimiter, path: str, caller: Caller | None, client_ip: str) -> tuple[Policy, str]:
    """The policy this request counts against, and whom it counts."""
    policies = limiter.policies
    if path in AUTH_PATHS or path.startswith(AUTH_PREFIXES):
        return policies.auth, ip_bucket(client_ip)
    if caller is None:
        return policies.anonymous, ip_bucket(client_ip)
    if caller.kind == "vendor":
        return policies.for_vendor(caller.vendor_rate_limit), caller.id
    return policies.user, caller.id


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = scope["app"].state if scope["type"] == "http" else None
        limiter: RateLimiter | None = getattr(state, "rate_limiter", None)
        if limiter is None or scope["path"].startswith(UNLIMITED_PREFIXES):
            await self.app(scope, receive, send)
            return
        caller = await state.callers.identify(scope)  # type: ignore[union-attr]
        peer = scope.get("client")
        policy, identity = policy_for(limiter, scope["path"], caller, peer[0] if peer else "unknown")
        verdict = await limiter.hit(policy, identity)
        if verdict is None:  # the store is unreachable: serve unlimited rather than fail
            await self.app(scope, receive, send)
            return
        headers = verdict.headers()
        if not verdict.allowed:
            detail = (
                f"more than {policy.item.amount} requests in {policy.window_s} s under the "
                f"{policy.name!r} limit; retry in {verdict.reset_after_s} s"
            )
            response = problem(Request(scope), CATALOGUE["RATE_LIMITED"], detail, headers=headers)
            await response(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).update(headers)
            await send(message)

        await self.app(scope, receive, send_with_headers)
