"""Every error leaves the API as application/problem+json (RFC 9457) with a stable code."""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import asyncpg
import sqlalchemy.exc
import stripe
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.client import RPCTimeoutOrCancelledError
from temporalio.exceptions import TemporalError
from temporalio.service import RPCError, RPCStatusCode

from ttelgo.errors import CATALOGUE, AppError, ErrorSpec
from ttelgo.esimgo.errors import SupplierError, SupplierRetryableError

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger(__name__)

_STATUS_CODES = {
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}


def problem(
    request: Request,
    spec: ErrorSpec,
    detail: str,
    *,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    request_id = getattr(request.state, "request_id", None)
    body: dict[str, Any] = {
        "type": f"urn:ttelgo:error:{spec.code}",
        "title": spec.title,
        "status": spec.status,
        "detail": detail,
        "instance": request.url.path,
        "code": spec.code,
        "number": spec.number,
        "request_id": request_id,
        **(extra or {}),
    }
    # Set here too: the catch-all handler answers from outside the request-id middleware.
    headers = {**(headers or {}), **({"X-Request-ID": request_id} if request_id else {})}
    return JSONResponse(body, status_code=spec.status, media_type=PROBLEM_JSON, headers=headers)


async def _app_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    headers = exc.headers
    if exc.spec.status == 503 and "Retry-After" not in headers:  # every 503 says when to come back
        headers = {**headers, "Retry-After": str(RETRY_AFTER_S)}
    return problem(request, exc.spec, exc.detail, extra=exc.extra, headers=headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"location": list(error["loc"]), "message": error["msg"], "type": error["type"]}
        for error in exc.errors()
    ]
    return problem(
        request,
        CATALOGUE["VALIDATION_ERROR"],
        "The request is not valid; see errors.",
        extra={"errors": errors},
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    spec = CATALOGUE[_STATUS_CODES.get(exc.status_code, "BAD_REQUEST")]
    detail = exc.detail if isinstance(exc.detail, str) else spec.title
    return problem(request, spec, detail, headers=dict(exc.headers or {}))


# -- dependency outages: 503 + Retry-After, never 500 ------------------------------------------------------
RETRY_AFTER_S = 5
"""What an outage answer asks the client to wait before retrying (the same request, the same key)."""

_DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,  # class 08: connection failures, including a dropped connection
    asyncpg.CannotConnectNowError,  # starting up or shutting down
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    sqlalchemy.exc.TimeoutError,  # no pooled connection became free in time
    sqlalchemy.exc.DisconnectionError,
)
_TEMPORAL_STATUSES = {
    RPCStatusCode.UNAVAILABLE,
    RPCStatusCode.DEADLINE_EXCEEDED,
    RPCStatusCode.RESOURCE_EXHAUSTED,
}
_STRIPE_ERRORS = (stripe.APIConnectionError, stripe.APIError, stripe.RateLimitError)
_NETWORK_ERRORS = (ConnectionError, TimeoutError, socket.gaierror)
_MODULE_DEPENDENCY = {
    "asyncpg": "database",
    "sqlalchemy": "database",
    "temporalio": "Temporal",
    "stripe": "Stripe",
}


@dataclass(frozen=True)
class Outage:
    """A dependency that could not be reached: the error code to answer with and whom to blame."""

    code: str
    dependency: str
    retry_after_s: int = RETRY_AFTER_S


def _raised_in(tb: TracebackType | None) -> str:
    """The dependency whose library raised a bare network error (asyncpg connecting, say)."""
    found = "a dependency"
    while tb is not None:
        module = str(tb.tb_frame.f_globals.get("__name__", "")).partition(".")[0]
        found = _MODULE_DEPENDENCY.get(module, found)
        tb = tb.tb_next
    return found


def _classify(exc: BaseException) -> Outage | None:
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
        return Outage("SERVICE_UNAVAILABLE", "database")
    if isinstance(exc, _DATABASE_ERRORS):
        return Outage("SERVICE_UNAVAILABLE", "database")
    if isinstance(exc, RPCError):
        return Outage("SERVICE_UNAVAILABLE", "Temporal") if exc.status in _TEMPORAL_STATUSES else None
    if isinstance(exc, RPCTimeoutOrCancelledError):
        return Outage("SERVICE_UNAVAILABLE", "Temporal")
    if type(exc) is RuntimeError and str(exc).startswith("Failed client connect"):
        return Outage("SERVICE_UNAVAILABLE", "Temporal")  # the lazy Temporal client cannot connect
    if isinstance(exc, _STRIPE_ERRORS):
        return Outage("SERVICE_UNAVAILABLE", "Stripe")
    if isinstance(exc, SupplierRetryableError):
        wait = max(RETRY_AFTER_S, round(exc.retry_after or 0))
        return Outage("SUPPLIER_UNAVAILABLE", "eSIM Go", wait)
    if isinstance(exc, _NETWORK_ERRORS):
        return Outage("SERVICE_UNAVAILABLE", _raised_in(exc.__traceback__))
    return None


def outage_of(exc: BaseException) -> Outage | None:
    """The outage behind `exc`, looking through what it was raised from (`raise … from`, SQLAlchemy's
    `orig`); None when it is anything else, which stays a bug (500)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        found = _classify(current)
        if found:
            return found
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) and id(orig) not in seen else current.__cause__
    return None


def unavailable(outage: Outage, detail: str | None = None) -> AppError:
    return AppError(
        outage.code,
        detail or f"{outage.dependency} is unavailable; retry later",
        extra={"dependency": outage.dependency},
        headers={"Retry-After": str(outage.retry_after_s)},
    )


async def _dependency_error(request: Request, exc: Exception) -> JSONResponse:
    outage = outage_of(exc)
    if outage is None:
        raise exc  # not an outage: the catch-all answers 500, as for any bug
    log.warning(
        "%s unavailable on %s %s: %s: %s",
        outage.dependency,
        request.method,
        request.url.path,
        type(exc).__name__,
        str(exc)[:300],
    )
    return await _app_error(request, unavailable(outage))


# Handled in the exception middleware (inside the request), only to be classified by `outage_of`.
_DEPENDENCY_ERROR_TYPES: tuple[type[Exception], ...] = (
    OSError,
    RuntimeError,
    sqlalchemy.exc.SQLAlchemyError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    TemporalError,
    stripe.StripeError,
    SupplierError,
)


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem(
        request, CATALOGUE["INTERNAL_ERROR"], "An unexpected error occurred; quote the request id."
    )


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for error_type in _DEPENDENCY_ERROR_TYPES:
        app.add_exception_handler(error_type, _dependency_error)
    app.add_exception_handler(Exception, _unhandled)
