"""What reading one request body may cost: its size, and how long it may take to arrive.

The body is counted as it streams in, so an oversized one is refused (413) without being buffered, and a
declared Content-Length over the limit is refused before a byte of it is read. A body still incomplete
when its deadline passes is answered 408. Either way the connection is closed, so the server never goes on
reading what the client keeps sending; so is any connection answered before its body was read whole.
"""

from __future__ import annotations

import asyncio

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import problem
from ttelgo.errors import CATALOGUE

_CLOSE = {"Connection": "close"}


class _BodyRefused(HTTPException):
    """Raised into the handler reading the body; FastAPI lets HTTPException through its body parsing, and
    this middleware answers in place of whatever the app makes of it."""

    def __init__(self, code: str, detail: str) -> None:
        self.code = code
        super().__init__(CATALOGUE[code].status, detail, headers=_CLOSE)


class RequestLimitsMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int, read_timeout_s: float) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.read_timeout_s = read_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared = _content_length(headers)
        if declared is not None and declared > self.max_body_bytes:
            too_large = _BodyRefused("PAYLOAD_TOO_LARGE", self._too_large_detail())
            await _answer(scope, receive, send, too_large)
            return

        deadline = asyncio.get_running_loop().time() + self.read_timeout_s
        has_body = bool(declared) or "chunked" in headers.get("transfer-encoding", "").lower()
        body_read = not has_body
        received = 0
        refused: _BodyRefused | None = None
        response_started = False

        async def receive_within_limits() -> Message:
            nonlocal body_read, received, refused
            if refused is not None:
                raise refused
            if body_read:  # waiting for a disconnect (streaming responses do) has no deadline
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                refused = _BodyRefused(
                    "REQUEST_TIMEOUT", f"the request body did not arrive within {self.read_timeout_s:g} s"
                )
                raise refused from None
            if message["type"] != "http.request":
                body_read = True
                return message
            received += len(message.get("body", b""))
            if received > self.max_body_bytes:
                refused = _BodyRefused("PAYLOAD_TOO_LARGE", self._too_large_detail())
                raise refused
            body_read = not message.get("more_body", False)
            return message

        async def send_guarded(message: Message) -> None:
            nonlocal response_started
            if refused is not None:
                return  # the app's own answer to the refusal; ours is sent instead
            if message["type"] == "http.response.start":
                response_started = True
                if not body_read:
                    MutableHeaders(scope=message)["Connection"] = "close"
            await send(message)

        try:
            await self.app(scope, receive_within_limits, send_guarded)
        except Exception:
            if refused is None:
                raise  # whatever the app made of a refusal (re-raised, wrapped) is answered below instead
        if refused is not None and not response_started:
            await _answer(scope, receive, send, refused)

    def _too_large_detail(self) -> str:
        return f"the request body is larger than {self.max_body_bytes} bytes"


def _content_length(headers: Headers) -> int | None:
    try:
        return int(headers["content-length"])
    except (KeyError, ValueError):
        return None


async def _answer(scope: Scope, receive: Receive, send: Send, refused: _BodyRefused) -> None:
    response = problem(Request(scope), CATALOGUE[refused.code], str(refused.detail), headers=_CLOSE)
    await response(scope, receive, send)
