"""The dev stack's SMTP server (aiosmtpd): accepts every message on loopback and writes it, exactly as
received, to `<mail dir>/<time>-<n>.eml`, for `ttelgo dev mail` (and tests) to read. It relays nothing.

Run: python -m ttelgo.sandbox.smtp_server --port 8025 --dir .ttelgo/mail
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session

MAX_MESSAGE_BYTES = 10 * 1024 * 1024


class MailDrop:
    """aiosmtpd handler: one `.eml` file per message, written under a temporary name then renamed, so a
    reader never sees half a message."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self._counter = itertools.count(1)

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content or b""
        if isinstance(content, str):
            content = content.encode()
        headers = (
            f"X-Envelope-From: {envelope.mail_from}\r\nX-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n"
        ).encode()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        name = f"{stamp}-{os.getpid()}-{next(self._counter):04d}.eml"
        temporary = self.directory / f".{name}.part"
        temporary.write_bytes(headers + content)
        temporary.replace(self.directory / name)
        return "250 Message accepted for delivery"


def start(directory: Path, port: int, host: str = "127.0.0.1") -> Controller:
    controller = Controller(MailDrop(directory), hostname=host, port=port, data_size_limit=MAX_MESSAGE_BYTES)
    controller.start()
    return controller


@contextmanager
def running(directory: Path, port: int) -> Iterator[Controller]:
    """The server in a thread of this process (tests)."""
    controller = start(directory, port)
    try:
        yield controller
    finally:
        controller.stop()


def answers(port: int, host: str = "127.0.0.1") -> bool:
    """The server greets (220) on `port`."""
    try:
        with socket.create_connection((host, port), timeout=2) as sock:
            return sock.recv(3) == b"220"
    except OSError:
        return False


def messages(directory: Path) -> list[Path]:
    """The received messages, oldest first."""
    return sorted(directory.glob("*.eml")) if directory.is_dir() else []


def read(path: Path) -> EmailMessage:
    parsed = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--dir", type=Path, default=Path(".ttelgo/mail"))
    args = parser.parse_args()
    controller = start(args.dir, args.port, args.host)
    print(f"SMTP on {args.host}:{args.port}, writing .eml files to {args.dir.resolve()}", flush=True)

    async def wait() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()

    try:
        asyncio.run(wait())
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
