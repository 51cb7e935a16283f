"""Card payment shapes: what a front end needs to confirm a PaymentIntent with Stripe.js."""

from __future__ import annotations

import uuid
from datetime import datetime

import stripe as stripe_errors
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from api.schemas.fields import BundleCode, PositiveAmount
from api.schemas.orders import OrderDetail
from ttelgo.errors import AppError
from ttelgo.models import PaymentStatus
from ttelgo.payments import PaymentDeclined, StripeGateway
from workflows.topup import TopupStatus


class CardPaymentOut(BaseModel):
    payment_intent_id: str
    client_secret: str = Field(description="hand to Stripe.js (confirmCardPayment); never logged")
    amount_minor: int = Field(description="always the server's price; the client never sets it")
    currency: str
    status: str = Field(description="Stripe's PaymentIntent status")

    @classmethod
    async def of(cls, stripe: StripeGateway, intent_id: str) -> CardPaymentOut:
        """Read from Stripe, so the client secret never enters a workflow history (the Idempotency-Key
        record keeps the response for 24 h, so that a retried request gets the same answer)."""
        try:
            intent = await stripe.retrieve_intent(intent_id)
        except (stripe_errors.StripeError, PaymentDeclined) as exc:
            raise AppError(
                "SERVICE_UNAVAILABLE", "Stripe did not answer; retry", headers={"Retry-After": "2"}
            ) from exc
        assert intent.client_secret, "Stripe returns the client secret to the secret key"
        return cls(
            payment_intent_id=intent.id,
            client_secret=intent.client_secret,
            amount_minor=intent.amount_minor,
            currency=intent.currency,
            status=intent.status,
        )


class CustomerOrderCreate(BaseModel):
    model_config = ConfigDict(  # a price or amount from the client is refused, not ignored
        extra="forbid", json_schema_extra={"examples": [{"bundle_code": "esim_1GB_7D_GB_V2", "quantity": 1}]}
    )

    bundle_code: BundleCode
    quantity: int = Field(default=1, ge=1, le=5)


class CustomerOrderCreated(OrderDetail):
    payment: CardPaymentOut


class OrderPaymentRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"order_id": "0f8fad5b-d9cb-469f-a165-70867728950e"}]}
    )

    order_id: uuid.UUID


class TopupCreate(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"amount_minor": 50000, "currency": "USD"}]})

    amount_minor: PositiveAmount = Field(description="within the configured minimum and maximum")
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="the wallet's currency")


class TopupOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    amount_minor: int
    currency: str
    payment_status: PaymentStatus = Field(validation_alias=AliasChoices("payment_status", "status"))
    created_at: datetime


class TopupDetail(TopupOut):
    state: TopupStatus | None = Field(default=None, description="the top-up workflow's state")
    payment: CardPaymentOut | None = Field(default=None, description="present while payment is possible")
