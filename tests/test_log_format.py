"""LOG_FORMAT: readable lines by default, one JSON object a line with `json`: time, level, logger, message,
the request id, and the workflow and order a line is about when logged inside Temporal; redacted alike."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import uuid
from collections.abc import Iterator

import pytest
from pydantic import ValidationError
from temporalio import activity
from temporalio.testing import ActivityEnvironment

from tests.test_log_redaction import JWT
from ttelgo.observability import JsonFormatter, RequestIdFilter, configure_logging, request_id_var, secure
from ttelgo.settings import Settings


@pytest.fixture
def lines() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing through one of our handlers in the JSON format."""
    stream = io.StringIO()
    handler = secure(logging.StreamHandler(stream), "json")
    log = logging.getLogger(f"ttelgo.test.json.{uuid.uuid4().hex[:6]}")
    log.addHandler(handler)
    log.propagate = False
    token = request_id_var.set("-")
    try:
        yield log, stream
    finally:
        request_id_var.reset(token)
        log.removeHandler(handler)


def _objects(stream: io.StringIO) -> list[dict[str, str]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_json_line_has_time_level_logger_message_and_request_id(
    lines: tuple[logging.Logger, io.StringIO],
) -> None:
    log, stream = lines
    request_id_var.set("req-42")
    log.warning("vendor %s suspended", "v-1")
    [entry] = _objects(stream)
    assert entry.keys() == {"time", "level", "logger", "message", "request_id"}
    assert entry["level"] == "WARNING" and entry["logger"] == log.name
    assert entry["message"] == "vendor v-1 suspended" and entry["request_id"] == "req-42"
    assert entry["time"].endswith("+00:00") and "T" in entry["time"]


def test_json_lines_are_redacted_in_the_message_and_the_traceback(
    lines: tuple[logging.Logger, io.StringIO],
) -> None:
    log, stream = lines
    try:
        raise RuntimeError("refused sk_live_51HxYzAbCdEf for bob.smith@example.com")
    except RuntimeError:
        log.exception("call with Bearer %s failed\nsecond line", JWT)
    [entry] = _objects(stream)  # a multi-line message and a traceback still make one line
    assert stream.getvalue().count("\n") == 1
    assert JWT not in stream.getvalue() and "sk_live_51HxYzAbCdEf" not in stream.getvalue()
    assert "bob.smith" not in stream.getvalue()
    assert entry["message"] == "call with Bearer [redacted] failed\nsecond line"
    assert "RuntimeError: refused sk_live_[redacted]" in entry["exception"]


async def test_a_line_logged_in_an_order_activity_names_its_workflow_and_order(
    lines: tuple[logging.Logger, io.StringIO],
) -> None:
    log, stream = lines
    order_id = uuid.uuid4()
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, workflow_id=f"order-{order_id}-attempt-2")

    async def step() -> None:
        log.info("placing the supplier order")
        activity.LoggerAdapter(log, None).info("through the SDK's logger")

    await env.run(step)
    for entry in _objects(stream):
        assert entry["workflow_id"] == f"order-{order_id}-attempt-2"
        assert entry["order_id"] == str(order_id)


def test_workflow_lines_and_explicit_order_ids(lines: tuple[logging.Logger, io.StringIO]) -> None:
    log, stream = lines
    order_id = str(uuid.uuid4())
    # What workflow.logger attaches to its records.
    log.info(
        "refund reserved", extra={"temporal_workflow": {"workflow_id": "refund-r1"}, "order_id": order_id}
    )
    log.info("outside any workflow")
    inside, outside = _objects(stream)
    assert inside["workflow_id"] == "refund-r1" and inside["order_id"] == order_id
    assert "workflow_id" not in outside and "order_id" not in outside


def test_text_stays_the_default_and_the_format_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(_env_file=None).log_format == "text"  # type: ignore[call-arg]
    monkeypatch.setenv("LOG_FORMAT", "json")
    assert Settings(_env_file=None).log_format == "json"  # type: ignore[call-arg]
    monkeypatch.setenv("LOG_FORMAT", "xml")
    with pytest.raises(ValidationError):
        Settings(_env_file=None)  # type: ignore[call-arg]

    stream = io.StringIO()
    log = logging.getLogger("ttelgo.test.text")
    handler = secure(logging.StreamHandler(stream))
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("plain for %s", "alice@example.org")
    finally:
        log.removeHandler(handler)
    line = stream.getvalue()
    assert " WARNING ttelgo.test.text [request_id=" in line and line.rstrip().endswith(
        "plain for ***@example.org"
    )
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


def test_configure_logging_switches_our_root_handler_between_formats() -> None:
    def ours() -> list[logging.Formatter | None]:
        handlers = logging.getLogger().handlers
        return [h.formatter for h in handlers if any(isinstance(f, RequestIdFilter) for f in h.filters)]

    try:
        configure_logging("INFO", "json")
        assert ours() and all(isinstance(f, JsonFormatter) for f in ours())
    finally:
        configure_logging("INFO", "text")
    assert ours() and not any(isinstance(f, JsonFormatter) for f in ours())
