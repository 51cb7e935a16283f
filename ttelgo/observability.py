"""Logging with the request/correlation id on every line, for the API, the worker and the CLI, with
secrets redacted (tokens, API keys, Stripe and webhook secrets, password hashes, activation codes and
e-mail addresses) before any handler writes the line."""

from __future__ import annotations

import logging
import re
from contextvars import ContextVar

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")

REDACTIONS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"(?i)\b(bearer\s+)[\w.~+/=-]+"), r"\1[redacted]"),
    (re.compile(r"\beyJ[\w-]+\.eyJ[\w-]+\.[\w-]+"), "[redacted token]"),
    (re.compile(r"(?i)\b(x-api-key[\"']?\s*[:=,]\s*[\"']?)[\w-]+"), r"\1[redacted]"),
    (re.compile(r"\b(ttg_[0-9a-f]{12})_[\w-]+"), r"\1_[redacted]"),
    (re.compile(r"\b(tt[rp]_)[\w-]{16,}"), r"\1[redacted]"),  # refresh tokens, password-reset codes
    (re.compile(r"\b(?:pi|seti)_\w+?_secret_\w+"), "[redacted client secret]"),
    (re.compile(r"\b([sr]k_(?:test|live)_)\w+"), r"\1[redacted]"),
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=]+"), "whsec_[redacted]"),
    (re.compile(r"\$argon2(?:id|i|d)\$[\w+/=$,.-]+"), "[redacted password hash]"),
    (re.compile(r"LPA:1\$[^\s'\"]+"), "LPA:1$[redacted]"),
    # E-mail addresses, also URL-encoded in query strings (%40): the domain stays, for debugging.
    (re.compile(r"[A-Za-z0-9._%+-]+(@|%40)([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})"), r"***\1\2"),
]


def redact(text: str) -> str:
    for pattern, replacement in REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


class RedactingFilter(logging.Filter):
    """Rewrites the record itself (message, traceback, stack), so every handler after it sees it redacted."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [request_id=%(request_id)s] %(message)s"


def secure(handler: logging.Handler) -> logging.Handler:
    """Our format and filters on a handler (idempotent)."""
    for kind in (RedactingFilter, RequestIdFilter):
        if not any(isinstance(f, kind) for f in handler.filters):
            handler.addFilter(kind())
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    return handler


def configure_logging(level: str = "INFO") -> None:
    """Idempotent: one handler of ours on the root logger; every root handler redacts."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    for handler in root.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
    if not any(any(isinstance(f, RequestIdFilter) for f in h.filters) for h in root.handlers):
        root.addHandler(secure(logging.StreamHandler()))
    # Uvicorn's own loggers propagate to ours, so their lines carry the request id too.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
