"""Supplier failures as Temporal sees them: permanent ones stop retries, 429s say when to come back."""

from __future__ import annotations

from datetime import timedelta

from temporalio.exceptions import ApplicationError

from ttelgo.esimgo import SupplierError, SupplierPermanentError, SupplierRetryableError


def as_application_error(exc: SupplierError) -> ApplicationError:
    if isinstance(exc, SupplierPermanentError):
        return ApplicationError(
            exc.message, type=f"Supplier{exc.reason.value.title().replace('_', '')}", non_retryable=True
        )
    delay = (
        timedelta(seconds=exc.retry_after)
        if isinstance(exc, SupplierRetryableError) and exc.retry_after
        else None
    )
    return ApplicationError(exc.message, type="SupplierRetryable", next_retry_delay=delay)
