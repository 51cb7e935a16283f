"""The catch-all for control characters: a NUL (or another C0 control character) in the path, the query
string or anywhere in a JSON body answers 422 VALIDATION_ERROR before any route runs, on every route,
whatever its schema says. PostgreSQL cannot store NUL in text, so without this one stray byte in a login
is a database error (500), or a workflow input no activity can ever write.

The field types in `api.schemas.fields` say the same per field (and in the OpenAPI); this is the net under
the routes whose schemas do not. Signed webhooks are left to their handlers, which answer 400 as their
senders expect.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import problem
from api.schemas.fields import LINE_CONTROL_RE, TEXT_CONTROL_RE
from ttelgo.errors import CATALOGUE

UNGUARDED_BODIES = ("/api/v1/webhooks/",)
# A JSON string can only carry a control character escaped (a raw one is invalid JSON, refused anyway);
# bodies without such an escape are not parsed twice.
_ESCAPED_CONTROL = re.compile(rb"\\u00[01][0-9a-f]|\\u007f", re.IGNORECASE)


def _strings(value: Any, location: list[str | int]) -> Iterator[tuple[list[str | int], str]]:
    if isinstance(value, str):
        yield location, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield [*location, key], key
            yield from _strings(item, [*location, key])
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, [*location, index])


def _in_url(scope: Scope) -> list[str | int] | None:
    if LINE_CONTROL_RE.search(scope["path"]):
        return ["path"]
    query = scope.get("query_string", b"").decode("latin-1")
    for name, value in parse_qsl(query, keep_blank_values=True):
        if LINE_CONTROL_RE.search(name) or LINE_CONTROL_RE.search(value):
            return ["query", name]
    return None


def _in_json(body: bytes) -> list[str | int] | None:
    if not _ESCAPED_CONTROL.search(body):
        return None
    try:
        document = json.loads(body)
    except ValueError:
        return None  # not JSON: the route's own parsing refuses it
    for location, string in _strings(document, ["body"]):
        if TEXT_CONTROL_RE.search(string):
            return location
    return None


def _is_json(scope: Scope) -> bool:
    content_type = next((v for k, v in scope["headers"] if k == b"content-type"), b"").lower()
    media_type = content_type.partition(b";")[0].strip()
    return media_type == b"application/json" or media_type.endswith(b"+json")


async def _read_body(receive: Receive) -> tuple[bytes, Receive]:
    """The whole body, and a `receive` that hands it to the app as one message."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away: let the app see that
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body, replayed = b"".join(chunks), False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return body, replay


class ControlCharacterGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        found = _in_url(scope)
        if found is None and _is_json(scope) and not scope["path"].startswith(UNGUARDED_BODIES):
            body, receive = await _read_body(receive)
            found = _in_json(body)
        if found is None:
            await self.app(scope, receive, send)
            return
        response = problem(
            Request(scope),
            CATALOGUE["VALIDATION_ERROR"],
            "The request is not valid; see errors.",
            extra={
                "errors": [
                    {
                        "location": found,
                        "message": "control characters (such as NUL) are not allowed",
                        "type": "control_character",
                    }
                ]
            },
        )
        await response(scope, receive, send)
