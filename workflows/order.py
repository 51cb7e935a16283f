"""The order workflow (`order-{id}`), one story for both channels.

B2B: hold the vendor price on the wallet → provision at eSIM Go → store the eSIMs → post the hold →
COMPLETED; a permanent supplier failure (or transient ones past the retry budget) voids the hold → FAILED.
Supplier data that cannot be delivered on (a reissued ICCID, a reference eSIM Go no longer knows) stops
the order in NEEDS_ATTENTION with its money still held, until an operator retries or gives it up.
B2C: open a PaymentIntent → PAYMENT_PENDING → paid within the window → PAID → provision → COMPLETED and
the customer notified; declined → PAYMENT_FAILED, still waiting; window closed or canceled → EXPIRED or
CANCELED; a permanent supplier failure after payment is refunded through Stripe → REFUNDED.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.exceptions import TimeoutError as StepTimedOut

with workflow.unsafe.imports_passed_through():
    from activities.contracts import (
        ANSWER_SIGNAL,
        ASK_FOR_PURCHASE,
        BOOK_SUPPLIER_COST,
        CREATE_ORDER_RECORD,
        FETCH_INSTALL_DETAILS,
        HOLD_FUNDS,
        LOW_BALANCE_PATCH,
        MAX_BATCH_BUNDLES,
        NEEDS_OPERATOR,
        NOTIFICATION_PATCH,
        PLACE_SUPPLIER_ORDER,
        POST_HOLD,
        QUEUE_ESIMS_READY,
        REFUND_FAILED,
        REFUND_PAYMENT,
        RELEASE_SUPPLIER_ORDER,
        SET_ORDER_STATUS,
        STOP_BUYING,
        STORE_ESIMS,
        SUPPLIER_BATCHING_PATCH,
        SUPPLIER_COST_PATCH,
        SUPPLIER_STEPS,
        VOID_HOLD,
        EsimInstall,
        LineOutcome,
        MailTemplate,
        Notify,
        OrderInput,
        PostedHold,
        PurchaseAnswer,
        PurchaseRequest,
        RefundRequest,
        StatusChange,
        StoreEsims,
        SupplierOrderRef,
    )
    from ttelgo.models.orders import Channel, OrderStatus
    from ttelgo.payments import PaymentEvent
    from workflows.notification import notify
    from workflows.order_types import (
        UNPAID,
        Acceptance,
        OperatorAction,
        OperatorDecision,
        OrderProgress,
    )
    from workflows.payment import STRIPE_CALL, CardPayment, Settlement
    from workflows.webhook_delivery import emit_webhook

ORDER_ID = SearchAttributeKey.for_keyword("OrderId")
ORDER_STATUS = SearchAttributeKey.for_keyword("OrderStatus")
CHANNEL = SearchAttributeKey.for_keyword("Channel")
VENDOR_ID = SearchAttributeKey.for_keyword("VendorId")
BUNDLE_NAME = SearchAttributeKey.for_keyword("BundleName")

# Database and ledger steps are short and idempotent: local activities, without a task-queue round trip.
LOCAL_STEP = {"start_to_close_timeout": timedelta(seconds=30)}
MIN_STEP_BUDGET = timedelta(minutes=1)
# How long past its budget an order waits for its batcher's answer before it buys alone.
BATCH_ANSWER_GRACE = timedelta(minutes=2)
RELEASE_BUNDLES_PATCH = "release-bought-bundles"  # histories recorded before it did not return bundles
# Transient supplier faults are retried until the order's time budget is spent, not for a number of
# attempts; a supplier's Retry-After only ever lengthens these waits (activities/supplier_errors.py).
SUPPLIER_RETRIES = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=60))


def order_workflow_id(order_id: object, attempt: int = 1) -> str:
    """`order-{id}`; an operator's retry of a failed order runs as `order-{id}-attempt-{n}`."""
    return f"order-{order_id}" if attempt == 1 else f"order-{order_id}-attempt-{attempt}"


def attempt_of(workflow_id: str) -> int:
    _, _, attempt = workflow_id.partition("-attempt-")
    return int(attempt) if attempt else 1


def search_attributes(order: OrderInput, status: OrderStatus) -> TypedSearchAttributes:
    """No personal data here: ids, status, channel and the bundle only."""
    values = {
        ORDER_ID: str(order.order_id),
        ORDER_STATUS: status.value,
        CHANNEL: order.channel.value,
        BUNDLE_NAME: order.bundle_code,
    }
    if order.vendor_id:
        values[VENDOR_ID] = str(order.vendor_id)
    return TypedSearchAttributes([SearchAttributePair(key, value) for key, value in values.items()])


@workflow.defn(name="Order")
class OrderWorkflow:
    @workflow.init
    def __init__(self, order: OrderInput) -> None:
        self._order = order
        self._payment = CardPayment(order.payment(), timedelta(seconds=order.payment_window_s))
        self._progress = OrderProgress(status=OrderStatus.CREATED, step="recording the order")
        self._decision: OperatorDecision | None = None
        self._declines = 0
        self._purchase_request: uuid.UUID | None = None
        self._batched = False  # asked a batcher: a late call of it may still buy until the row is closed
        self._purchase: LineOutcome | None = None

    @workflow.run
    async def run(self, order: OrderInput) -> OrderProgress:
        await workflow.execute_local_activity(CREATE_ORDER_RECORD, order, **LOCAL_STEP)
        try:
            funded = await self._hold_funds() if order.channel is Channel.B2B else await self._take_payment()
            if funded:
                await self._fulfil()
        except (ActivityError, ApplicationError) as failure:
            await self._record_unexpected_end(failure)
        # The `accepted` update may still be answering; let it finish before the run closes.
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._progress

    async def _record_unexpected_end(self, failure: ActivityError | ApplicationError) -> None:
        """A step failed outside the story above: the run ends, and its order row must not be left in a
        state that promises progress. Nothing was taken from an unpaid order; a paid one is left for an
        operator (reconciliation reports it, since its workflow has ended)."""
        code, reason = failure_reason(failure)
        workflow.logger.error("order ended unexpectedly: %s: %s", code, reason)
        if self._progress.accepted is None:  # the `accepted` update must hear of it too
            await self._refuse(failure)
            return
        if self._progress.status in UNPAID:
            await self._move_to(OrderStatus.FAILED, "done", code, reason)
            await self._vendor_event("order.failed")
            return
        _count_attention(code)
        await self._move_to(OrderStatus.NEEDS_ATTENTION, "ended; an operator must settle it", code, reason)

    async def _fulfil(self) -> None:
        order = self._order
        await self._move_to(OrderStatus.PROVISIONING, "ordering at eSIM Go")
        while True:
            try:
                esims = await self._provision(deadline=workflow.now() + self._retry_budget)
                break
            except (ActivityError, ApplicationError) as failure:
                code, reason = failure_reason(failure)
                if code in NEEDS_OPERATOR:
                    decision = await self._ask_operator(code, reason)
                    if decision.action is OperatorAction.RETRY:
                        await self._move_to(OrderStatus.PROVISIONING, "ordering at eSIM Go again")
                        continue
                    code, reason = (
                        "OPERATOR_GAVE_UP",
                        f"{reason}; given up by {decision.actor}: {decision.reason}",
                    )
                await self._compensate(code, reason)
                return
        posted: PostedHold | None = None  # histories recorded before low-balance alerts hold None
        if order.channel is Channel.B2B:
            self._progress.step = "charging the wallet"
            posted = await workflow.execute_local_activity(
                POST_HOLD, order, result_type=PostedHold | None, **LOCAL_STEP
            )
        if workflow.patched(SUPPLIER_COST_PATCH):
            # Only a delivered order costs us its bundles: one given up returns them (RELEASE_SUPPLIER_ORDER).
            self._progress.step = "booking the supplier cost"
            await workflow.execute_local_activity(BOOK_SUPPLIER_COST, order, **LOCAL_STEP)
        await self._move_to(OrderStatus.COMPLETED, "done")
        await self._deliver_news(posted)
        workflow.logger.info("order completed with %d eSIM(s)", len(esims))

    async def _deliver_news(self, posted: PostedHold | None) -> None:
        """A vendor hears `order.completed` (and of a low balance, if this debit crossed its threshold);
        a card customer gets the eSIMs by e-mail."""
        if self._order.channel is Channel.B2B:
            await self._vendor_event("order.completed")
            if posted is not None and posted.low_balance and workflow.patched(LOW_BALANCE_PATCH):
                await self._low_balance()
        elif not await self._notify(MailTemplate.ESIMS_READY):  # histories from before e-mail existed
            await workflow.execute_local_activity(QUEUE_ESIMS_READY, self._order.order_id, **LOCAL_STEP)

    async def _ask_operator(self, code: str, reason: str) -> OperatorDecision:
        """Stops with the money still held until an operator decides (the `resolve` update)."""
        workflow.logger.error("order needs an operator: %s: %s", code, reason)
        _count_attention(code)
        await self._move_to(OrderStatus.NEEDS_ATTENTION, "waiting for an operator", code, reason)
        await workflow.wait_condition(lambda: self._decision is not None)
        decision, self._decision = self._decision, None
        assert decision is not None
        return decision

    @workflow.update
    def resolve(self, decision: OperatorDecision) -> OrderProgress:
        """An operator's answer to an order stopped in NEEDS_ATTENTION; answers as soon as it is taken
        (giving up may wait on Stripe; the order's own status says when it is done)."""
        self._decision = decision
        return self._progress

    @resolve.validator
    def _only_stopped(self, decision: OperatorDecision) -> None:
        if self._progress.status is not OrderStatus.NEEDS_ATTENTION or self._decision is not None:
            raise ApplicationError(
                f"a {self._progress.status.value} order is not waiting for an operator",
                type="ORDER_INVALID_STATE",
            )

    async def _compensate(self, code: str, reason: str) -> None:
        """No supplier call may buy for the order any more (a batch's could, late), its money goes back,
        then what it bought goes back to eSIM Go."""
        if self._batched:
            await workflow.execute_local_activity(STOP_BUYING, self._order.order_id, **LOCAL_STEP)
        await self._give_money_back(code, reason)
        await self._release_bought_bundles()

    async def _give_money_back(self, code: str, reason: str) -> None:
        """Compensation: the wallet hold is voided, a card payment is refunded."""
        if self._order.channel is Channel.B2B:
            self._progress.step = "releasing the held funds"
            await workflow.execute_local_activity(VOID_HOLD, self._order, **LOCAL_STEP)
            await self._move_to(OrderStatus.FAILED, "done", code, reason)
            await self._vendor_event("order.failed")
            return
        self._progress.step = "refunding the card payment"
        assert self._payment.intent_id is not None
        refund = RefundRequest(
            payment=self._order.payment(), intent_id=self._payment.intent_id, reason=reason
        )
        try:
            await workflow.execute_activity(REFUND_PAYMENT, refund, **STRIPE_CALL)
        except ActivityError as refused:  # Stripe said no for good: an operator has to act
            why = f"{reason}; the card refund failed: {failure_reason(refused)[1]}"
            await self._move_to(OrderStatus.FAILED, "done", REFUND_FAILED, why)
            return
        await self._move_to(OrderStatus.REFUNDED, "done", code, reason)
        await self._notify(MailTemplate.ORDER_REFUNDED)

    async def _release_bought_bundles(self) -> None:
        """Bundles bought for an order that then failed go back to our supplier balance where unused.
        After the money: a supplier problem here never holds a buyer's money back."""
        if not workflow.patched(RELEASE_BUNDLES_PATCH):
            return
        self._progress.step = "returning bought bundles to eSIM Go"
        try:
            await workflow.execute_activity(
                RELEASE_SUPPLIER_ORDER,
                self._order.order_id,
                task_queue=self._order.supplier_task_queue,
                start_to_close_timeout=timedelta(seconds=60),
                schedule_to_close_timeout=self._retry_budget,
                retry_policy=SUPPLIER_RETRIES,
            )
        except ActivityError as failure:  # reconciliation does not see a claimed order: log for operators
            workflow.logger.error("bought bundles not returned: %s", failure_reason(failure)[1])
        self._progress.step = "done"

    @workflow.update
    async def accepted(self) -> Acceptance:
        await workflow.wait_condition(lambda: self._progress.accepted is not None)
        return self._progress.acceptance()

    @workflow.update
    async def cancel(self) -> OrderProgress:
        """The buyer gives up an unpaid order; answers once the order has settled either way."""
        self._payment.cancel()
        await workflow.wait_condition(lambda: self._progress.status not in UNPAID)
        return self._progress

    @cancel.validator
    def _only_unpaid(self) -> None:
        if self._order.channel is not Channel.B2C or self._progress.status not in UNPAID:
            raise ApplicationError(
                f"a {self._progress.status.value} order cannot be canceled", type="ORDER_INVALID_STATE"
            )

    @workflow.signal
    def payment_event(self, event: PaymentEvent) -> None:
        self._payment.on_event(event)

    @workflow.signal(name=ANSWER_SIGNAL)
    def supplier_purchase(self, answer: PurchaseAnswer) -> None:
        """The batcher's answer to this run's latest purchase request (an earlier one's is stale)."""
        if answer.request_id == self._purchase_request:
            self._purchase = answer.outcome

    @workflow.query
    def status(self) -> OrderProgress:
        return self._progress

    async def _take_payment(self) -> bool:
        self._progress.step = "opening the card payment"
        try:
            intent = await self._payment.open()
        except ActivityError as refused:  # Stripe said no to the intent itself
            await self._refuse(refused)
            return False
        self._progress.payment_intent_id = intent.id
        self._progress.accepted = True
        await self._move_to(OrderStatus.PAYMENT_PENDING, "waiting for the card payment")
        settlement = await self._payment.settle(self._declined)
        if settlement is Settlement.PAID:
            await self._move_to(OrderStatus.PAID, "paid")
            await self._notify(MailTemplate.PAYMENT_RECEIPT)
            return True
        final = OrderStatus.CANCELED if settlement is Settlement.CANCELED else OrderStatus.EXPIRED
        await self._move_to(final, "done")
        await self._notify(MailTemplate.ORDER_CLOSED)
        return False

    async def _declined(self, reason: str | None) -> None:
        await self._move_to(
            OrderStatus.PAYMENT_FAILED, "waiting for another card payment", "PAYMENT_FAILED", reason
        )
        self._declines += 1
        await self._notify(MailTemplate.PAYMENT_FAILED, occurrence=str(self._declines))

    async def _notify(self, template: MailTemplate, occurrence: str | None = None) -> bool:
        """Card customers hear of their order's changes by e-mail (vendors get webhooks); False in
        histories recorded before e-mail existed, where no message was queued here."""
        if self._order.channel is not Channel.B2C or not workflow.patched(NOTIFICATION_PATCH):
            return False
        await notify(Notify(template=template, order_id=self._order.order_id, occurrence=occurrence))
        return True

    async def _vendor_event(self, event_type: str) -> None:
        """Vendors hear of their orders' ends by webhook (behind the `vendor-webhooks` patch). A refused
        order (the 402 the vendor was answered at once) sends none."""
        if self._order.channel is Channel.B2B:
            await emit_webhook(event_type, order_id=self._order.order_id)

    async def _low_balance(self) -> None:
        """This order's debit took the wallet under the vendor's threshold (the posting step decided, under
        the wallet lock): a `wallet.low_balance` event and the e-mail to the vendor's contact, each once
        (the event id and the e-mail's dedupe key come from this run and its posting)."""
        await emit_webhook("wallet.low_balance", order_id=self._order.order_id)
        await notify(
            Notify(
                template=MailTemplate.LOW_BALANCE,
                order_id=self._order.order_id,
                vendor_id=self._order.vendor_id,
            )
        )

    async def _hold_funds(self) -> bool:
        self._progress.step = "holding funds on the wallet"
        try:
            await workflow.execute_local_activity(HOLD_FUNDS, self._order, **LOCAL_STEP)
        except (ActivityError, ApplicationError) as refused:  # a local activity's failure may come unwrapped
            await self._refuse(refused)
            return False
        self._progress.accepted = True
        return True

    async def _refuse(self, failure: ActivityError | ApplicationError) -> None:
        code, reason = failure_reason(failure)
        # All at once: the `accepted` update answers as soon as `accepted` is set.
        self._progress = self._progress.model_copy(
            update={"accepted": False, "failure_code": code, "failure_reason": reason}
        )
        await self._move_to(OrderStatus.FAILED, "done", code, reason)

    async def _provision(self, deadline: datetime) -> list[EsimInstall]:
        """Buys (or finds) the order's eSIMs and stores them; supplier faults are retried until `deadline`."""
        ref = await self._buy(deadline)
        esims = ref.esims
        if len(esims) < self._order.quantity:  # the supplier finishes large orders later
            self._progress.step = "reading the install details"
            esims = await workflow.execute_activity(
                FETCH_INSTALL_DETAILS,
                ref,
                result_type=list[EsimInstall],
                task_queue=self._order.supplier_task_queue,
                start_to_close_timeout=timedelta(seconds=30),
                schedule_to_close_timeout=max(deadline - workflow.now(), MIN_STEP_BUDGET),
                retry_policy=SUPPLIER_RETRIES,
            )
        self._progress.step = "storing the eSIMs"
        batch = StoreEsims(
            order_id=self._order.order_id,
            bundle_code=self._order.bundle_code,
            quantity=self._order.quantity,
            esims=esims,
        )
        await workflow.execute_local_activity(STORE_ESIMS, batch, **LOCAL_STEP)
        return esims

    async def _buy(self, deadline: datetime) -> SupplierOrderRef:
        """The order's supplier order: bought with other waiting orders as one multi-line supplier order
        where it can be (eSIM Go's request limit then bounds calls, not orders), else alone."""
        order = self._order
        if (
            order.supplier_batching
            and order.quantity <= MAX_BATCH_BUNDLES
            and workflow.patched(SUPPLIER_BATCHING_PATCH)
        ):
            bought = await self._buy_in_batch(deadline)
            if bought is not None:
                return bought
        return await workflow.execute_activity(
            PLACE_SUPPLIER_ORDER,
            self._order,
            result_type=SupplierOrderRef,
            task_queue=self._order.supplier_task_queue,
            start_to_close_timeout=timedelta(seconds=60),
            schedule_to_close_timeout=max(deadline - workflow.now(), MIN_STEP_BUDGET),
            heartbeat_timeout=timedelta(seconds=10),
            retry_policy=SUPPLIER_RETRIES,
        )

    async def _buy_in_batch(self, deadline: datetime) -> SupplierOrderRef | None:
        """Asks the supplier batcher; None when the order must buy alone (its row waits on another call's
        answer, or the batcher did not answer in time). A refusal of its line or a spent budget fails it."""
        request = PurchaseRequest(
            request_id=workflow.uuid4(),
            order_id=self._order.order_id,
            quantity=self._order.quantity,
            workflow_id=workflow.info().workflow_id,
            deadline=deadline,
            supplier_task_queue=self._order.supplier_task_queue,
            batcher_task_queue=workflow.info().task_queue,
        )
        self._batched = True
        self._purchase_request, self._purchase = request.request_id, None
        await workflow.execute_local_activity(ASK_FOR_PURCHASE, request, **LOCAL_STEP)
        wait = max(deadline - workflow.now(), MIN_STEP_BUDGET) + BATCH_ANSWER_GRACE
        try:
            await workflow.wait_condition(lambda: self._purchase is not None, timeout=wait)
        except TimeoutError:
            workflow.logger.warning("no answer from the supplier batcher: buying alone")
            return None
        outcome = self._purchase
        assert outcome is not None
        if outcome.ref is not None:
            return outcome.ref
        if outcome.final:
            raise ApplicationError(outcome.reason or "", type=outcome.code, non_retryable=True)
        return None

    @property
    def _retry_budget(self) -> timedelta:
        return timedelta(seconds=self._order.supplier_retry_budget_s)

    async def _move_to(
        self, status: OrderStatus, step: str, code: str | None = None, reason: str | None = None
    ) -> None:
        change = StatusChange(
            order_id=self._order.order_id, status=status, failure_code=code, failure_reason=reason
        )
        await workflow.execute_local_activity(SET_ORDER_STATUS, change, **LOCAL_STEP)
        self._progress = self._progress.model_copy(
            update={"status": status, "step": step, "failure_code": code, "failure_reason": reason}
        )
        workflow.upsert_search_attributes(
            [p.key.value_set(p.value) for p in search_attributes(self._order, status)]
        )


def failure_reason(failure: ActivityError | ApplicationError) -> tuple[str, str]:
    cause = failure.cause if isinstance(failure, ActivityError) else failure
    # A step that failed although its last error was retryable (or that timed out) spent its time budget.
    if isinstance(failure, ActivityError) and (
        isinstance(cause, StepTimedOut) or (isinstance(cause, ApplicationError) and not cause.non_retryable)
    ):
        last = cause.cause if isinstance(cause, StepTimedOut) else cause
        detail = f": {last.message}" if isinstance(last, ApplicationError) else ""
        code = "SUPPLIER_UNAVAILABLE" if failure.activity_type in SUPPLIER_STEPS else "RETRIES_EXHAUSTED"
        return code, f"gave up after retrying for the whole budget{detail}"
    if isinstance(cause, ApplicationError):
        return cause.type or "FAILED", cause.message
    return "FAILED", str(cause or failure)


def _count_attention(code: str) -> None:
    """Orders stopped for an operator, by reason: the alert."""
    workflow.metric_meter().create_counter(
        "ttelgo_orders_needing_attention", "orders stopped for an operator"
    ).add(1, {"reason": code})
