"""The order workflow's update, query and result types. Passed through the sandbox: a workflow module runs
again for every run, and defining pydantic models there would cost each order's run that CPU."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field

from ttelgo.models.orders import OrderStatus

UNPAID = (OrderStatus.CREATED, OrderStatus.PAYMENT_PENDING, OrderStatus.PAYMENT_FAILED)


class OperatorAction(StrEnum):
    RETRY = "retry"  # provision again (e.g. once the supplier has corrected its data)
    GIVE_UP = "give_up"  # fail the order: the wallet hold is voided, a card payment refunded


class OperatorDecision(BaseModel):
    action: OperatorAction
    actor: str = Field(max_length=100)
    reason: str = Field(max_length=1000)


class Acceptance(BaseModel):
    """Whether the order got past its money check (B2B: the hold; B2C: an open PaymentIntent)."""

    accepted: bool
    code: str | None = None
    detail: str | None = None
    payment_intent_id: str | None = None


class OrderProgress(BaseModel):
    status: OrderStatus
    step: str
    accepted: bool | None = None  # None until the money check is done
    failure_code: str | None = None
    failure_reason: str | None = None
    payment_intent_id: str | None = None

    def acceptance(self) -> Acceptance:
        return Acceptance(
            accepted=bool(self.accepted),
            code=self.failure_code,
            detail=self.failure_reason,
            payment_intent_id=self.payment_intent_id,
        )
