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
    """429, 5xx, 503 "processing", timeouts, connection errors: try again, after `retry_after` if given."""

    retryable = True

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class SupplierPermanentError(SupplierError):
    def __init__(self, reason: PermanentReason, message: str, *, status: int | None = None) -> None:
        super().__init__(message, status=status)
        self.reason = reason
