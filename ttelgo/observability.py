"""Logging with the request/correlation id on every line, for the API, the worker and the CLI, with
secrets redacted (tokens, API keys, Stripe and webhook secrets, password hashes, activation codes and
e-mail addresses) before any handler writes the line. LOG_FORMAT=json writes one JSON object a line, with
the workflow and order a line is about when it is logged inside a Temporal workflow or activity."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Literal

from temporalio import activity

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


class TemporalContextFilter(logging.Filter):
    """The workflow a line is about: from the Temporal SDK's loggers (`temporal_workflow`/`_activity`
    extras), or the running activity for any other logger; the order from an `order_id` extra or from an
    order workflow's id."""

    def filter(self, record: logging.LogRecord) -> bool:
        workflow_id = next(
            (
                details["workflow_id"]
                for details in (
                    getattr(record, "temporal_workflow", None),
                    getattr(record, "temporal_activity", None),
                )
                if isinstance(details, Mapping) and details.get("workflow_id")
            ),
            None,
        )
        if workflow_id is None and activity.in_activity():
            workflow_id = activity.info().workflow_id
        record.workflow_id = workflow_id
        if getattr(record, "order_id", None) is None:
            found = _ORDER_WORKFLOW_ID.match(workflow_id or "")
            record.order_id = found.group(1) if found else None
        return True


# `order-{id}` and an operator's retry `order-{id}-attempt-{n}` (workflows/order.py).
_ORDER_WORKFLOW_ID = re.compile(r"^order-([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\b")


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
LogFormat = Literal["text", "json"]


class JsonFormatter(logging.Formatter):
    """One JSON object a line. Written here rather than taken from a JSON-logging library because those
    render the traceback again from `exc_info`, past the redacted copy that RedactingFilter leaves in
    `exc_text`; this one writes only fields the filters have already made safe."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, str] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in ("request_id", "workflow_id", "order_id"):
            value = getattr(record, field, None)
            if value is not None and value != "-":
                entry[field] = str(value)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False)


def _formatter(fmt: LogFormat) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else logging.Formatter(LOG_FORMAT)


def secure(handler: logging.Handler, fmt: LogFormat = "text") -> logging.Handler:
    """Our format and filters on a handler (idempotent)."""
    for kind in (RedactingFilter, RequestIdFilter, TemporalContextFilter):
        if not any(isinstance(f, kind) for f in handler.filters):
            handler.addFilter(kind())
    handler.setFormatter(_formatter(fmt))
    return handler


def configure_logging(level: str = "INFO", fmt: LogFormat = "text") -> None:
    """Idempotent: one handler of ours on the root logger, in today's format; every root handler redacts."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    for handler in root.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
    ours = [h for h in root.handlers if any(isinstance(f, RequestIdFilter) for f in h.filters)]
    if not ours:
        ours = [logging.StreamHandler()]
        root.addHandler(ours[0])
    for handler in ours:
        secure(handler, fmt)
    # Uvicorn's own loggers propagate to ours, so their lines carry the request id too.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
