"""Supplier failures, sorted into what a retry can fix and what it cannot."""

from __future__ import annotations

from enum import StrEnum


class PermanentReason(StrEnum):
    UNKNOWN_BUNDLE = "UNKNOWN_BUNDLE"
    NO_STOCK = "NO_STOCK"
    SUPPLIER_BALANCE_EXHAUSTED = "SUPPLIER_BALANCE_EXHAUSTED"
    BAD_API_KEY = "BAD_API_KEY"
    NOT_FOUND = "NOT_FOUND"
    REJECTED = "REJECTED"


class SupplierError(Exception):
    retryable: bool = False

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class SupplierRetryableError(SupplierError):
    """429, 5xx, 503 "processing", timeouts, connection errors: try again, after `retry_after` if given.

    `in_doubt` is true when the supplier may have carried the request out although we got no answer (a
    read timeout, a dropped connection, a 500/502/504): a write must not simply be sent again.
    """

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        in_doubt: bool = False,
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after
        self.in_doubt = in_doubt


class SupplierPermanentError(SupplierError):
    def __init__(self, reason: PermanentReason, message: str, *, status: int | None = None) -> None:
        super().__init__(message, status=status)
        self.reason = reason
