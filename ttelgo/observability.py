"""Logging with the request/correlation id on every line, for the API, the worker and the CLI."""

from __future__ import annotations

import logging
from contextvars import ContextVar

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [request_id=%(request_id)s] %(message)s"


def configure_logging(level: str = "INFO") -> None:
    """Idempotent: one handler on the root logger, with the request id filter on the handler."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    for handler in root.handlers:
        if any(isinstance(f, RequestIdFilter) for f in handler.filters):
            return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(RequestIdFilter())
    root.addHandler(handler)
    # Uvicorn's own loggers propagate to ours, so their lines carry the request id too.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
