"""The error catalogue: every error a client can see, with a stable code, a number and an HTTP status.

Numbers are grouped in ranges so a code's family shows at a glance; codes and numbers never change
meaning once published (add new ones instead). The API renders these as application/problem+json.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    number: int
    code: str
    status: int
    title: str

    @property
    def family(self) -> str:
        return next(name for (low, high), name in RANGES.items() if low <= self.number <= high)


RANGES: dict[tuple[int, int], str] = {
    (1000, 1999): "general",
    (2000, 2999): "auth",
    (3000, 3999): "rate_limit",
    (4000, 4999): "user",
    (5000, 5999): "vendor",
    (6000, 6999): "order",
    (7000, 7999): "payment",
    (8000, 8999): "esim",
    (9000, 9999): "bundle",
    (10000, 10999): "supplier",
    (11000, 11999): "idempotency",
    (12000, 12999): "webhook",
    (13000, 13999): "business",
}

_SPECS = [
    # general
    ErrorSpec(1000, "INTERNAL_ERROR", 500, "Internal server error"),
    ErrorSpec(1001, "VALIDATION_ERROR", 422, "The request is not valid"),
    ErrorSpec(1002, "NOT_FOUND", 404, "Resource not found"),
    ErrorSpec(1003, "METHOD_NOT_ALLOWED", 405, "Method not allowed"),
    ErrorSpec(1004, "BAD_REQUEST", 400, "Bad request"),
    ErrorSpec(1005, "CONFLICT", 409, "The request conflicts with the resource's current state"),
    ErrorSpec(1006, "SERVICE_UNAVAILABLE", 503, "A dependency is unavailable"),
    ErrorSpec(1007, "UNSUPPORTED_MEDIA_TYPE", 415, "Unsupported media type"),
    ErrorSpec(1008, "PAYLOAD_TOO_LARGE", 413, "Request body too large"),
    ErrorSpec(1020, "REQUEST_TIMEOUT", 408, "The request body did not arrive in time"),
    # auth
    ErrorSpec(2000, "UNAUTHENTICATED", 401, "Authentication required"),
    ErrorSpec(2001, "INVALID_CREDENTIALS", 401, "Invalid e-mail or password"),
    ErrorSpec(2002, "TOKEN_INVALID", 401, "The token is invalid"),
    ErrorSpec(2003, "TOKEN_EXPIRED", 401, "The token has expired"),
    ErrorSpec(2004, "API_KEY_INVALID", 401, "The API key is invalid or revoked"),
    ErrorSpec(2005, "FORBIDDEN", 403, "Not allowed"),
    ErrorSpec(2006, "SESSION_REVOKED", 401, "The session has ended; log in again"),
    ErrorSpec(2007, "RESET_TOKEN_INVALID", 400, "The password reset token is invalid, used or expired"),
    # rate limit
    ErrorSpec(3000, "RATE_LIMITED", 429, "Too many requests"),
    ErrorSpec(3001, "TOO_MANY_UNPAID_ORDERS", 429, "Too many unpaid orders or top-ups; pay or cancel one"),
    # user
    ErrorSpec(4000, "USER_NOT_FOUND", 404, "User not found"),
    ErrorSpec(4001, "EMAIL_ALREADY_REGISTERED", 409, "This e-mail is already registered"),
    ErrorSpec(4002, "USER_INACTIVE", 403, "The account is disabled"),
    # vendor
    ErrorSpec(5000, "VENDOR_NOT_FOUND", 404, "Vendor not found"),
    ErrorSpec(5001, "VENDOR_NOT_APPROVED", 403, "The vendor is not approved"),
    ErrorSpec(5002, "VENDOR_SUSPENDED", 403, "The vendor is suspended"),
    ErrorSpec(5003, "VENDOR_ALREADY_EXISTS", 409, "A vendor with this e-mail exists"),
    ErrorSpec(5010, "NOT_DEACTIVATED", 409, "Only a deactivated vendor or account can be reactivated"),
    ErrorSpec(5011, "INVOICE_PAYMENT_IN_USE", 409, "The debit would take back money that paid an invoice"),
    # order
    ErrorSpec(6000, "ORDER_NOT_FOUND", 404, "Order not found"),
    ErrorSpec(6001, "ORDER_INVALID_STATE", 409, "The order cannot do this in its current state"),
    ErrorSpec(6002, "ORDER_QUANTITY_OUT_OF_RANGE", 422, "Quantity out of range"),
    # payment
    ErrorSpec(7000, "PAYMENT_NOT_FOUND", 404, "Payment not found"),
    ErrorSpec(7001, "PAYMENT_FAILED", 402, "The payment failed"),
    ErrorSpec(7002, "REFUND_EXCEEDS_CAPTURED", 409, "The refund exceeds what was captured"),
    ErrorSpec(7003, "TOPUP_AMOUNT_OUT_OF_RANGE", 422, "Top-up amount out of range"),
    # esim
    ErrorSpec(8000, "ESIM_NOT_FOUND", 404, "eSIM not found"),
    ErrorSpec(8001, "ESIM_ALREADY_USED", 409, "The eSIM has been used"),
    ErrorSpec(8010, "TOPUP_BUNDLE_INCOMPATIBLE", 422, "The bundle does not fit this eSIM's coverage"),
    ErrorSpec(8011, "ESIM_NOT_TOPUPABLE", 409, "The eSIM's profile cannot take another bundle"),
    # bundle
    ErrorSpec(9000, "BUNDLE_NOT_FOUND", 404, "Bundle not found"),
    ErrorSpec(9001, "BUNDLE_UNKNOWN", 422, "Unknown bundle"),
    ErrorSpec(9002, "COUNTRY_CODE_INVALID", 422, "Not an ISO 3166-1 alpha-2 country code"),
    # supplier
    ErrorSpec(10000, "SUPPLIER_UNAVAILABLE", 503, "The eSIM supplier is unavailable"),
    ErrorSpec(10001, "SUPPLIER_OUT_OF_STOCK", 409, "The supplier has no bundles left"),
    ErrorSpec(10002, "SUPPLIER_REJECTED", 502, "The supplier rejected the request"),
    # idempotency
    ErrorSpec(11000, "IDEMPOTENCY_KEY_MISSING", 400, "The Idempotency-Key header is required"),
    ErrorSpec(11001, "IDEMPOTENCY_KEY_REUSED", 422, "The Idempotency-Key was used with another request"),
    ErrorSpec(
        11002, "IDEMPOTENCY_REQUEST_IN_PROGRESS", 409, "A request with this Idempotency-Key is in progress"
    ),
    # webhook
    ErrorSpec(12000, "WEBHOOK_SIGNATURE_INVALID", 400, "The webhook signature is invalid"),
    ErrorSpec(12001, "WEBHOOK_PAYLOAD_INVALID", 400, "The webhook payload is invalid"),
    ErrorSpec(12002, "CALLBACK_SIGNATURE_INVALID", 401, "The callback signature is missing or invalid"),
    # business
    ErrorSpec(13000, "INSUFFICIENT_FUNDS", 402, "Insufficient funds"),
    ErrorSpec(13001, "CREDIT_LIMIT_EXCEEDED", 402, "Credit limit exceeded"),
    ErrorSpec(13010, "INVOICE_OVERDUE", 402, "An invoice is overdue; new orders wait until it is paid"),
    ErrorSpec(13011, "INVOICE_NOT_FOUND", 404, "Invoice not found"),
]

CATALOGUE: dict[str, ErrorSpec] = {spec.code: spec for spec in _SPECS}


class AppError(Exception):
    """An error meant for the client. Raise it anywhere; the API renders it as problem+json."""

    def __init__(
        self,
        code: str,
        detail: str | None = None,
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.spec = CATALOGUE[code]
        self.detail = detail or self.spec.title
        self.extra = extra or {}
        self.headers = headers or {}
        super().__init__(f"{code}: {self.detail}")
