"""`ttelgo dev pay`: confirm an order's PaymentIntent with a test card, the way a front end would."""

from __future__ import annotations

import uuid

import stripe as stripe_sdk
from sqlalchemy import select

from ttelgo.db import create_engine, session_factory
from ttelgo.models import Order, Payment
from ttelgo.payments import IntentRef, PaymentDeclined, StripeGateway
from ttelgo.settings import Settings

PAYABLE = ("requires_payment_method", "requires_confirmation")


class NothingToPay(Exception):
    pass


class IntentGone(NothingToPay):
    """localstripe keeps intents in memory: after it restarts, the intents of earlier orders are gone."""


async def pay_order(settings: Settings, order_id: uuid.UUID, payment_method: str) -> IntentRef:
    """The intent after the attempt; a declined card is an answer here, not an error."""
    engine = create_engine(str(settings.database_url), pool_size=1)
    try:
        async with session_factory(engine)() as session:
            order = await session.get(Order, order_id)
            payment = await session.scalar(select(Payment).where(Payment.order_id == order_id))
    finally:
        await engine.dispose()
    if order is None or payment is None:
        raise NothingToPay(f"no card payment for order {order_id} (is it a B2C order?)")
    stripe = StripeGateway(str(settings.stripe_secret_key), settings.stripe_api_base)
    try:
        try:
            intent = await stripe.retrieve_intent(payment.provider_payment_id)
        except PaymentDeclined as refused:
            if not refused.missing:
                raise
            raise IntentGone(
                f"localstripe no longer has PaymentIntent {payment.provider_payment_id} of order {order_id} "
                "(it keeps intents in memory and has restarted since the order was placed), so this order "
                "cannot be paid: it expires when its payment window closes; place a new order to pay"
            ) from refused
        if intent.status not in PAYABLE:
            raise NothingToPay(
                f"order {order_id} is {order.status.value}; its PaymentIntent is {intent.status}"
            )
        try:
            return await stripe.confirm_intent(intent.id, payment_method)
        except PaymentDeclined:
            return await stripe.retrieve_intent(intent.id)
    except stripe_sdk.APIConnectionError as exc:
        raise NothingToPay(
            f"localstripe does not answer at {settings.stripe_api_base}: is `ttelgo dev` running?"
        ) from exc
    finally:
        await stripe.aclose()
