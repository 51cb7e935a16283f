"""ASGI middleware: a request id on every response and log line, and Prometheus request metrics."""

from __future__ import annotations

import re
import time
import uuid
from http import HTTPMethod

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ttelgo.observability import request_id_var

REQUEST_ID_HEADER = "X-Request-ID"
# A caller's id is reused only if it is short and plain, so it cannot inject into logs or headers.
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), "")
        request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        # Not reset afterwards: the unhandled-error handler runs outside this middleware and still logs it.
        request_id_var.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        await self.app(scope, receive, send_with_id)


KNOWN_METHODS = frozenset(HTTPMethod)
UNMATCHED_ROUTE = "unmatched"
OTHER_METHOD = "OTHER"


class HttpMetrics:
    """Request counts and latency by route template and status. Every label comes from a closed set (the
    app's route templates, the standard methods, status codes) so no caller can grow the series."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ("method", "route", "status")
        self.requests = Counter("http_requests", "HTTP requests handled", labels, registry=registry)
        self.latency = Histogram(
            "http_request_duration_seconds", "HTTP request latency", labels, registry=registry
        )


class ResponseStatus:
    """The status the app answered with (500 until it starts answering), for middleware that reports on a
    request once its answer has gone: pass `send` of this object to the app in place of the server's."""

    def __init__(self, send: Send) -> None:
        self.code = 500
        self._send = send

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.code = message["status"]
        await self._send(message)


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = ResponseStatus(send)
        try:
            await self.app(scope, receive, status.send)
        finally:
            # Starlette puts the matched (or method-mismatched) route of this app here: one of its templates.
            route = getattr(scope.get("route"), "path", UNMATCHED_ROUTE)
            method = scope["method"] if scope["method"] in KNOWN_METHODS else OTHER_METHOD
            labels = (method, route, str(status.code))
            self.metrics.requests.labels(*labels).inc()
            self.metrics.latency.labels(*labels).observe(time.perf_counter() - started)
