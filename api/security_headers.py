"""Security headers on every response, and no caching of anything that may carry a token or an eSIM.

Responses are JSON, so their Content-Security-Policy allows nothing at all; only the interactive docs pages
(/docs, /redoc: api.docs) state their own, `docs_csp`, which names no other host: the app serves their assets.
Caches must not keep a response to a request with credentials (order details and QR codes carry activation
codes, API-key creation returns the key) nor one that sets no caching rule of its own (login and refresh
answer tokens); public routes that choose their caching (the catalogue) keep it. HSTS only in production, where TLS is.
"""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import FastAPI
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# Swagger UI and ReDoc set styles at run time (style attributes, styled-components) and ReDoc searches in a
# Web Worker made from a blob; scripts run only from this origin, or inline when the page names their hash.
_DOCS_CSP = (
    "default-src 'none'; script-src 'self'{script_hashes}; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self'; worker-src 'self' blob:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
DOCS_PAGES = frozenset({"/docs", "/redoc"})
HSTS = "max-age=63072000; includeSubDomains"
_CREDENTIAL_HEADERS = ("authorization", "x-api-key", "cookie")


def docs_csp(script_hashes: Iterable[str]) -> str:
    """The policy of a docs page whose inline scripts have these base64 SHA-256 hashes."""
    return _DOCS_CSP.format(script_hashes="".join(f" 'sha256-{h}'" for h in script_hashes))


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        states_own_policy = path in DOCS_PAGES
        request_headers = Headers(scope=scope)
        credentialed = any(name in request_headers for name in _CREDENTIAL_HEADERS)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-Content-Type-Options"] = "nosniff"
                headers["X-Frame-Options"] = "DENY"
                headers["Referrer-Policy"] = "no-referrer"
                if not (states_own_policy and "content-security-policy" in headers):
                    headers["Content-Security-Policy"] = API_CSP
                if self.hsts:
                    headers["Strict-Transport-Security"] = HSTS
                if credentialed or "cache-control" not in headers:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install_security_headers(app: FastAPI, *, hsts: bool) -> None:
    """Outside even Starlette's error middleware, so the 500 it answers carries the headers too."""
    build = app.build_middleware_stack

    def build_with_headers() -> ASGIApp:
        return SecurityHeadersMiddleware(build(), hsts=hsts)

    app.build_middleware_stack = build_with_headers  # type: ignore[method-assign]
