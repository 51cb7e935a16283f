"""What must never be readable in a Temporal history or a log: activation codes, Stripe client secrets and
keys, webhook secrets, password hashes, tokens, API keys and e-mail addresses.

A history is read the way an operator with access to Temporal could read it: every payload (inputs,
results, signals, updates, memos, headers, search attributes), as raw bytes, and every failure's message
and stack trace. A payload the codec encrypted is ciphertext; only the long literal markers are looked for
there (a short pattern such as an e-mail address would match random bytes now and then).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.api.history.v1 import HistoryEvent

from ttelgo.codec import is_encrypted

MARKERS: dict[str, re.Pattern[str]] = {
    "activation code": re.compile(r"LPA:1\$[^\s\"$]+\$[^\s\"]+"),
    "Stripe client secret": re.compile(r"\b(?:pi|seti)_\w+?_secret_\w+"),
    "Stripe secret key": re.compile(r"\b[sr]k_(?:test|live)_\w+"),
    "webhook secret": re.compile(r"\bwhsec_[A-Za-z0-9+/=]+"),
    "password hash": re.compile(r"\$argon2(?:id|i|d)\$"),
    "API key": re.compile(r"\bttg_[0-9a-f]{12}_[\w-]{16,}"),
    "refresh token or reset code": re.compile(r"\btt[rp]_[\w-]{16,}"),
    "bearer token": re.compile(r"\beyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]{8,}"),
}
"""Long literal prefixes: safe to look for in ciphertext too."""

FIELDS: dict[str, re.Pattern[str]] = {
    # An activation code stored as its two halves rather than as one LPA string.
    "matching id": re.compile(r"\"(?:matching_?id|matchingId|activation_?code)\"\s*:\s*\"[^\"]+\"", re.I),
    "e-mail address": re.compile(
        r"[A-Za-z0-9._+-][A-Za-z0-9._%+-]+(?:@|%40)[A-Za-z0-9-]{2,}(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
    ),
}
"""Only in readable text (plain payloads, failure messages, log lines)."""


@dataclass(frozen=True)
class Finding:
    where: str
    kind: str
    excerpt: str

    def __str__(self) -> str:
        return f"{self.where}: {self.kind}: {self.excerpt!r}"


def scan_text(where: str, text: str, *, readable: bool = True) -> list[Finding]:
    patterns = {**MARKERS, **FIELDS} if readable else MARKERS
    return [
        Finding(where, kind, text[max(0, m.start() - 20) : m.end() + 20])
        for kind, pattern in patterns.items()
        for m in pattern.finditer(text)
    ]


def _pieces(message: Message) -> Iterator[tuple[str, bool]]:
    """Every payload's bytes and every failure's text in a protobuf message, with whether it is readable."""
    if isinstance(message, Payload):
        readable = not is_encrypted(message)
        yield message.data.decode("latin-1"), readable
        for value in message.metadata.values():
            yield value.decode("latin-1"), readable
        return
    if isinstance(message, Failure):
        yield message.message, True
        yield message.stack_trace, True
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            values: Iterable[object] = value.values()
        elif isinstance(value, Message):
            values = [value]
        else:  # a repeated field
            values = value
        for item in values:
            if isinstance(item, Message):
                yield from _pieces(item)


def scan_events(where: str, events: Iterable[HistoryEvent]) -> list[Finding]:
    found: list[Finding] = []
    for event in events:
        for text, readable in _pieces(event):
            found += scan_text(f"{where} event {event.event_id}", text, readable=readable)
    return found
