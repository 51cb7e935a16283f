"""Logs never carry secrets: SQL parameters are hidden from database errors, and the log filter redacts
tokens, API keys, Stripe and webhook secrets, password hashes, activation codes and e-mail addresses on
every handler, in the message and in the traceback."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
from sqlalchemy.exc import IntegrityError

from tests.support.secret_scan import scan_text
from ttelgo.auth import opaque
from ttelgo.auth.passwords import hash_password
from ttelgo.auth.resets import RESET_MARKER
from ttelgo.auth.sessions import REFRESH_MARKER
from ttelgo.db import create_engine, session_factory
from ttelgo.models import User
from ttelgo.observability import configure_logging

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbjoxMjMifQ.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
API_KEY = "ttg_0123456789ab_" + "S" * 43


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """A handler someone else put on the root logger before ours was configured (like a log shipper's)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    configure_logging()
    try:
        yield stream
    finally:
        root.removeHandler(handler)


def test_a_log_record_carrying_a_token_and_secrets_is_redacted(log_output: io.StringIO) -> None:
    log = logging.getLogger("ttelgo.test")
    secrets = [
        JWT,
        API_KEY,
        "pi_3Abc_secret_Xyz123",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "sk_live_51HxYzAbCdEf",
        "LPA:1$rsp.example.com$K2-1ABC-XYZ",
        "bob.smith@example.com",
        opaque.generate(REFRESH_MARKER)[0],
        opaque.generate(RESET_MARKER)[0],
    ]
    log.warning("refused Authorization: Bearer %s with X-API-Key: %s", JWT, API_KEY)
    try:
        raise RuntimeError(" ".join(secrets[2:]))
    except RuntimeError:
        log.exception("delivery failed for %s", "alice@example.org")
    written = log_output.getvalue()
    assert "refused Authorization: Bearer [redacted]" in written and "RuntimeError" in written
    assert [s for s in [*secrets, "alice@example.org"] if s in written] == []
    assert scan_text("log", written) == []


async def test_a_database_error_shows_neither_the_hash_nor_the_e_mail(
    database_url: str, log_output: io.StringIO
) -> None:
    email, password_hash = "carol.jones@example.com", hash_password("a long enough password")
    engine = create_engine(database_url, pool_size=1)
    try:
        async with session_factory(engine)() as session:
            session.add(User(email=email, password_hash=password_hash))
            await session.commit()
            session.add(User(email=email, password_hash=password_hash))
            with pytest.raises(IntegrityError) as raised:
                await session.commit()
    finally:
        await engine.dispose()
    assert password_hash not in str(raised.value)  # the engine hides the SQL parameters
    assert "SQL parameters hidden" in str(raised.value)
    logging.getLogger("api.problems").error("unhandled", exc_info=raised.value)
    written = log_output.getvalue()
    assert "IntegrityError" in written
    assert password_hash not in written and email not in written  # PostgreSQL's DETAIL names the e-mail
    assert scan_text("log", written) == []
