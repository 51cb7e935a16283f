"""Ledger refusals. They are AppErrors, so the API renders them as problem+json with a catalogue code."""

from __future__ import annotations

from typing import Any

from ttelgo.errors import AppError


class LedgerError(AppError):
    """Any refusal of the ledger; `code` is the error-catalogue code."""

    default_code = "VALIDATION_ERROR"

    def __init__(self, detail: str, *, code: str | None = None, extra: dict[str, Any] | None = None) -> None:
        self.code = code or self.default_code
        super().__init__(self.code, detail, extra=extra)


class InsufficientFunds(LedgerError):
    """A debit would take a floored wallet below −overdraft_limit (0 for PREPAID)."""

    def __init__(self, detail: str, *, code: str, available_minor: int, requested_minor: int) -> None:
        self.available_minor = available_minor
        self.requested_minor = requested_minor
        super().__init__(
            detail,
            code=code,
            extra={"available_minor": available_minor, "requested_minor": requested_minor},
        )


class TransferConflict(LedgerError):
    """The transfer id exists with different fields: the caller reused an id for another movement."""

    default_code = "CONFLICT"


class PendingNotFound(LedgerError):
    default_code = "NOT_FOUND"


class PendingAlreadyResolved(LedgerError):
    """The pending transfer was already posted or voided by another transfer id."""

    default_code = "CONFLICT"


class AccountNotFound(LedgerError):
    default_code = "NOT_FOUND"
