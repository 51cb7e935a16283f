"""Supplier failures as Temporal sees them: permanent ones stop retries; a supplier's Retry-After is a
floor under the backoff, never a replacement for it (a 1 s Retry-After must not spend every attempt of a
long outage in a minute)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

from ttelgo.esimgo import SupplierError, SupplierPermanentError, SupplierRetryableError

RETRYABLE = "SupplierRetryable"


def as_application_error(exc: SupplierError) -> ApplicationError:
    if isinstance(exc, SupplierPermanentError):
        return ApplicationError(
            exc.message, type=f"Supplier{exc.reason.value.title().replace('_', '')}", non_retryable=True
        )
    retry_after = exc.retry_after if isinstance(exc, SupplierRetryableError) else None
    delay = None
    if retry_after and activity.in_activity():
        info = activity.info()
        delay = max(timedelta(seconds=retry_after), backoff(info.retry_policy, info.attempt))
    return ApplicationError(exc.message, type=RETRYABLE, next_retry_delay=delay)


def backoff(policy: RetryPolicy | None, attempt: int) -> timedelta:
    """The wait Temporal's policy puts after `attempt` failures."""
    policy = policy or RetryPolicy()
    wait = policy.initial_interval * policy.backoff_coefficient ** (attempt - 1)
    ceiling = policy.maximum_interval or policy.initial_interval * 100
    return min(wait, ceiling)
