"""The API as it is served (`python -m api.serve`, a real uvicorn on a loopback port), spoken to over raw
sockets: slow and oversized bodies, oversized heads and idle connections are cut off by the server."""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import make_settings
from ttelgo.sandbox.processes import ManagedProcess, free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
MAX_BODY = 64 * 1024
SOCKET_GUARD_S = 30  # a hang guard: every case below ends by the server's own limits, well before this


@pytest.fixture
def api_port(database_url: str, tmp_path: Path) -> Iterator[int]:
    port = free_port()
    settings = make_settings(
        database_url=database_url,
        temporal_address=f"127.0.0.1:{free_port()}",  # never reached: the client connects lazily
        api_port=port,
        max_request_body_bytes=MAX_BODY,
        request_read_timeout_seconds=1,
        http_keep_alive_seconds=1,
        http_max_header_bytes=8192,
        data_dir=tmp_path / "data",
    ).resolved()
    env = {"PATH": os.environ["PATH"], **settings.service_env()}
    process = ManagedProcess(
        "api", [sys.executable, "-m", "api.serve"], tmp_path / "api.log", env=env, cwd=ROOT
    ).start()
    try:
        wait_until(
            lambda: httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).is_success,
            60,
            "waiting for the API",
            process,
        )
        yield port
    finally:
        process.stop()


def _exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes, bool]:
    """Sends `request`, reads until the server closes; the status, headers, body, and whether it closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_GUARD_S) as sock:
        sock.sendall(request)
        received = b""
        closed = False
        try:
            while chunk := sock.recv(65536):
                received += chunk
            closed = True
        except TimeoutError:
            pass
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines)}
    return int(status_line.split()[1]), headers, body, closed


def _post_head(content_length: int) -> bytes:
    return (
        f"POST /api/v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {content_length}\r\n\r\n"
    ).encode()


def test_a_body_that_stops_arriving_is_answered_408_and_the_connection_closed(api_port: int) -> None:
    status, headers, body, closed = _exchange(api_port, _post_head(1000) + b"{")
    assert status == 408 and json.loads(body)["code"] == "REQUEST_TIMEOUT"
    assert headers["connection"] == "close" and closed


def test_a_connection_announcing_1_gb_is_refused_at_once_and_closed(api_port: int) -> None:
    status, headers, body, closed = _exchange(api_port, _post_head(1 << 30) + b"{")
    assert status == 413 and json.loads(body)["code"] == "PAYLOAD_TOO_LARGE"
    assert headers["content-type"] == "application/problem+json"
    assert closed


def test_a_request_head_growing_past_the_limit_is_refused(api_port: int) -> None:
    # Never finished: the server refuses once what it holds of the head passes HTTP_MAX_HEADER_BYTES.
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 20_000
    status, _, _, closed = _exchange(api_port, request)
    assert status in (400, 431) and closed


def test_an_idle_keep_alive_connection_is_closed(api_port: int) -> None:
    status, headers, _, closed = _exchange(api_port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert status == 200 and headers.get("connection") != "close"
    assert closed  # by the keep-alive timeout, not by the request
