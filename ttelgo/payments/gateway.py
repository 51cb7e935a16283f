"""The few Stripe calls we make, async, with an idempotency key on every write.

Stripe answers a repeated write with the same idempotency key with the first result, so an activity that
is retried after a lost response gets the same PaymentIntent or refund instead of a second one.
"""

from __future__ import annotations

from typing import Any

import stripe
from pydantic import BaseModel


class PaymentDeclined(Exception):
    """Stripe refused the request itself (4xx): retrying the same call cannot help."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


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
        except PaymentDeclined:
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

    @staticmethod
    async def _call(request: Any) -> Any:
        try:
            return await request
        except (stripe.CardError, stripe.InvalidRequestError) as exc:
            raise PaymentDeclined(exc.user_message or str(exc), exc.code) from exc
