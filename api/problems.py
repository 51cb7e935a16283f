"""Every error leaves the API as application/problem+json (RFC 9457) with a stable code."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ttelgo.errors import CATALOGUE, AppError, ErrorSpec

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
    return problem(request, exc.spec, exc.detail, extra=exc.extra, headers=exc.headers)


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


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem(
        request, CATALOGUE["INTERNAL_ERROR"], "An unexpected error occurred; quote the request id."
    )


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unhandled)
