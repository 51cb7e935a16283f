"""Sending one message over SMTP with aiosmtplib (any server: the dev stack's local one, or a provider)."""

from __future__ import annotations

from email.message import EmailMessage

import aiosmtplib

from ttelgo.settings import Settings

# Answers that sending the same message again cannot change (a refused recipient or sender, a bad message).
PERMANENT_CODES = range(500, 600)


class SmtpMailer:
    def __init__(self, settings: Settings) -> None:
        assert settings.smtp_host and settings.mail_from, "resolve the settings first"
        self.host = settings.smtp_host
        self.port = settings.smtp_port
        self.username = settings.smtp_username
        self.password = settings.smtp_password
        self.start_tls = settings.smtp_starttls
        self.timeout = settings.smtp_timeout_seconds
        self.mail_from = settings.mail_from

    async def send(self, message: EmailMessage) -> None:
        await aiosmtplib.send(
            message,
            hostname=self.host,
            port=self.port,
            username=self.username,
            password=self.password,
            start_tls=self.start_tls,
            timeout=self.timeout,
        )


def is_permanent(error: BaseException) -> bool:
    """A 5xx answer to the recipients or the message: retrying sends the same thing to the same refusal."""
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        return all(e.code in PERMANENT_CODES for e in error.recipients)
    if isinstance(error, aiosmtplib.SMTPResponseException):
        return error.code in PERMANENT_CODES
    return False


def describe(error: BaseException) -> str:
    """What went wrong, without the addresses an SMTP answer may quote (this text reaches histories)."""
    code = getattr(error, "code", None)
    return f"{type(error).__name__}" + (f" (SMTP {code})" if code else "")
