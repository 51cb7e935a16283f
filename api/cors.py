"""CORS for browser front ends on other origins: only those in CORS_ALLOWED_ORIGINS, none by default."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from api.idempotency import HEADER as IDEMPOTENCY_HEADER
from api.middleware import REQUEST_ID_HEADER

ALLOWED_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
ALLOWED_HEADERS = ["Authorization", "Content-Type", IDEMPOTENCY_HEADER, "X-API-Key", REQUEST_ID_HEADER]
# What a front end reads back: where a created resource is, when to retry, its rate budget, a trace id.
EXPOSED_HEADERS = [
    "Location",
    "Retry-After",
    "RateLimit",
    "RateLimit-Policy",
    REQUEST_ID_HEADER,
    "ETag",
    "Idempotent-Replayed",
]


def allowed_origins(setting: str) -> list[str]:
    return [origin.strip().rstrip("/") for origin in setting.split(",") if origin.strip()]


def install_cors(app: FastAPI, origins_setting: str) -> None:
    """Credentials travel in headers (bearer tokens, API keys), never cookies, so none are allowed."""
    origins = allowed_origins(origins_setting)
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=ALLOWED_METHODS,
            allow_headers=ALLOWED_HEADERS,
            expose_headers=EXPOSED_HEADERS,
            max_age=600,
        )
