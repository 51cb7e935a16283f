"""The few Stripe calls we make, async, with an idempotency key on every write.

Stripe answers a repeated write with the same idempotency key with the first result, so an activity that
is retried after a lost response gets the same PaymentIntent or refund instead of a second one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import stripe
from pydantic import BaseModel


class PaymentDeclined(Exception):
    """Stripe refused the request itself (4xx): retrying the same call cannot help."""

    def __init__(self, message: str, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status

    @property
    def missing(self) -> bool:
        return self.status == 404 or self.code == "resource_missing"


class IntentMissing(PaymentDeclined):
    """Stripe has no such PaymentIntent (a test stand-in restarted, or another account's key)."""


class IntentRef(BaseModel):
    id: str
    status: str  # Stripe's: requires_payment_method, processing, succeeded, canceled, ...
    amount_minor: int
    currency: str
    client_secret: str | None = None


class RefundRef(BaseModel):
    id: str
    status: str  # pending, succeeded, failed, canceled
    amount_minor: int


class ListingUnsupported(Exception):
    """The Stripe endpoint in use cannot list this kind of object (a stand-in's gap, not a failure)."""


class StripeIntent(BaseModel):
    id: str
    status: str
    amount_minor: int
    currency: str
    metadata: dict[str, str]
    created: datetime


class StripeRefund(BaseModel):
    id: str
    status: str
    amount_minor: int
    currency: str
    charge: str | None
    payment_intent: str | None
    metadata: dict[str, str]
    created: datetime


class StripeDispute(BaseModel):
    id: str
    status: str
    reason: str | None
    amount_minor: int
    currency: str
    charge: str | None
    payment_intent: str | None
    created: datetime


def _at(timestamp: int) -> datetime:
    return datetime.fromtimestamp(int(timestamp), UTC)


def _id(value: Any) -> str | None:
    """An id field, whether Stripe sent the id or the expanded object."""
    if value is None or isinstance(value, str):
        return value
    return str(value["id"])


def _intent(obj: Any) -> IntentRef:
    return IntentRef(
        id=obj.id,
        status=obj.status,
        amount_minor=obj.amount,
        currency=obj.currency.upper(),
        client_secret=getattr(obj, "client_secret", None),
    )


class StripeGateway:
    def __init__(self, secret_key: str, api_base: str | None = None) -> None:
        self._http = stripe.HTTPXClient()
        self._real_stripe = api_base is None
        self._client = stripe.StripeClient(
            secret_key,
            base_addresses={"api": api_base} if api_base else {},
            http_client=self._http,
            max_network_retries=0,  # retries belong to the workflow engine
        )

    async def aclose(self) -> None:
        await self._http.close_async()

    async def create_intent(
        self, *, amount_minor: int, currency: str, metadata: dict[str, str], idempotency_key: str
    ) -> IntentRef:
        params: Any = {"amount": amount_minor, "currency": currency.lower(), "metadata": metadata}
        return _intent(
            await self._call(
                self._client.v1.payment_intents.create_async(
                    params=params, options={"idempotency_key": idempotency_key}
                )
            )
        )

    async def retrieve_intent(self, intent_id: str) -> IntentRef:
        return _intent(await self._call(self._client.v1.payment_intents.retrieve_async(intent_id)))

    async def confirm_intent(self, intent_id: str, payment_method: str) -> IntentRef:
        """What Stripe.js does in a browser; used by `ttelgo dev pay` and tests."""
        params: Any = {"payment_method": payment_method}
        return _intent(
            await self._call(self._client.v1.payment_intents.confirm_async(intent_id, params=params))
        )

    async def cancel_intent(self, intent_id: str) -> IntentRef:
        """Cancels the intent unless it is past that point; answers the intent as it now stands."""
        try:
            return _intent(await self._call(self._client.v1.payment_intents.cancel_async(intent_id)))
        except PaymentDeclined as refused:
            if refused.missing:
                raise IntentMissing(refused.message, refused.code, refused.status) from refused
            current = await self.retrieve_intent(intent_id)
            if current.status in ("succeeded", "canceled", "processing"):
                return current  # paid (or paying) just before the cancel: the caller decides
            raise

    async def refund(
        self, *, intent_id: str, amount_minor: int | None, metadata: dict[str, str], idempotency_key: str
    ) -> RefundRef:
        params: Any = {"payment_intent": intent_id, "metadata": metadata}
        if amount_minor is not None:
            params["amount"] = amount_minor
        refund = await self._call(
            self._client.v1.refunds.create_async(params=params, options={"idempotency_key": idempotency_key})
        )
        return RefundRef(id=refund.id, status=refund.status, amount_minor=refund.amount)

    async def retrieve_refund(self, refund_id: str) -> RefundRef:
        refund = await self._call(self._client.v1.refunds.retrieve_async(refund_id))
        return RefundRef(id=refund.id, status=refund.status, amount_minor=refund.amount)

    # -- reconciliation: what Stripe holds, listed by creation time -------------------------------------
    async def list_intents(self, since: datetime) -> list[StripeIntent]:
        """PaymentIntents created at or after `since`."""
        rows = await self._list(self._client.v1.payment_intents.list_async, since)
        return [
            StripeIntent(
                id=o["id"],
                status=o["status"],
                amount_minor=o["amount"],
                currency=o["currency"].upper(),
                metadata=dict(o.get("metadata") or {}),
                created=_at(o["created"]),
            )
            for o in rows
        ]

    async def list_refunds(self, since: datetime) -> list[StripeRefund]:
        """Refunds created at or after `since`, ours and those made elsewhere (the Stripe dashboard)."""
        rows = await self._list(self._client.v1.refunds.list_async, since)
        return [
            StripeRefund(
                id=o["id"],
                status=o["status"],
                amount_minor=o["amount"],
                currency=o["currency"].upper(),
                charge=_id(o.get("charge")),
                payment_intent=_id(o.get("payment_intent")),
                metadata=dict(o.get("metadata") or {}),
                created=_at(o["created"]),
            )
            for o in rows
        ]

    async def intent_of_charge(self, charge_id: str) -> str | None:
        charge = await self._call(self._client.v1.charges.retrieve_async(charge_id))
        return _id(charge.to_dict().get("payment_intent"))

    async def list_disputes(self, since: datetime) -> list[StripeDispute]:
        """Disputes created at or after `since`; ListingUnsupported where the endpoint does not exist
        (localstripe has no disputes)."""
        try:
            rows = await self._list(self._client.v1.disputes.list_async, since)
        except stripe.StripeError as exc:
            if exc.http_status == 404:
                raise ListingUnsupported("this Stripe endpoint cannot list disputes") from exc
            raise
        return [
            StripeDispute(
                id=o["id"],
                status=o["status"],
                reason=o.get("reason"),
                amount_minor=o["amount"],
                currency=o["currency"].upper(),
                charge=_id(o.get("charge")),
                payment_intent=_id(o.get("payment_intent")),
                created=_at(o["created"]),
            )
            for o in rows
        ]

    async def _list(self, list_call: Any, since: datetime, max_pages: int = 100) -> list[Any]:
        """Every object created since `since`, page by page. Stripe filters by `created[gte]` itself; a
        stand-in at a custom base (localstripe refuses the filter) is listed whole and filtered here."""
        cutoff = int(since.timestamp())
        params: dict[str, Any] = {"limit": 100}
        if self._real_stripe:
            params["created"] = {"gte": cutoff}
        page = await list_call(params=params)
        found: list[Any] = []
        for _ in range(max_pages):
            found += [o.to_dict() for o in page.data if int(o["created"]) >= cutoff]
            if not page.has_more or not page.data:
                break
            page = await list_call(params={**params, "starting_after": page.data[-1]["id"]})
        return found

    @staticmethod
    async def _call(request: Any) -> Any:
        try:
            return await request
        except (stripe.CardError, stripe.InvalidRequestError) as exc:
            raise PaymentDeclined(exc.user_message or str(exc), exc.code, exc.http_status) from exc
