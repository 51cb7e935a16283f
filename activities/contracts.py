"""What activities take and return, and their names: shared with workflows, free of I/O."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field

from ttelgo.esimgo.callbacks import UsageCallback
from ttelgo.housekeeping import Chore
from ttelgo.models.esims import EsimAlertKind
from ttelgo.models.identity import BillingMode
from ttelgo.models.orders import Channel, OrderKind, OrderStatus, PaymentPurpose, PaymentStatus, RefundStatus
from ttelgo.webhooks.events import WebhookEventType

SYNC_CATALOGUE = "catalogue.sync"


class CatalogueSyncResult(BaseModel):
    bundles: int
    deactivated: int
    synced_at: datetime


APPLY_USAGE = "esim.apply_usage"


class UsageEvent(BaseModel):
    """A verified eSIM Go usage callback, identified by the hash of its raw body."""

    event_id: str
    callback: UsageCallback


class EsimAlert(BaseModel):
    """A usage alert the calling workflow claimed and alone sends: by id (the row says the rest)."""

    alert_id: uuid.UUID
    kind: str  # EsimAlertKind
    channel: Channel  # B2C: the customer's e-mail; B2B: the vendor's webhook
    order_id: uuid.UUID  # the order that sold the eSIM (its buyer is told)

    def mail(self) -> Notify:
        """The customer's e-mail: its outbox dedupe key derives from the alert id."""
        expiring = self.kind == EsimAlertKind.EXPIRING
        template = MailTemplate.ESIM_EXPIRING if expiring else MailTemplate.ESIM_USAGE
        return Notify(template=template, order_id=self.order_id, occurrence=str(self.alert_id))

    def webhook_type(self) -> str:
        expiring = self.kind == EsimAlertKind.EXPIRING
        return (WebhookEventType.ESIM_EXPIRING if expiring else WebhookEventType.ESIM_USAGE_THRESHOLD).value

    def webhook_subject(self) -> str:
        """What the vendor event's id derives from, whichever run emits it."""
        return f"esim-alert-{self.alert_id}"

    def webhook(self) -> EmitWebhook:
        event_type = self.webhook_type()
        return EmitWebhook(
            event_type=event_type,
            event_id=webhook_event_id(self.webhook_subject(), event_type),
            alert_id=self.alert_id,
        )


class UsageOutcome(BaseModel):
    applied: bool
    detail: str
    alerts: list[EsimAlert] = []  # older histories recorded none


USAGE_ALERTS_PATCH = "esim-usage-alerts"  # usage runs that send the alerts their callback crossed
REFRESH_ESIM = "esim.refresh"  # supplier queue: the eSIM and its bundles read from eSIM Go
EXPIRY_PLAN = "esim.expiry_plan"  # local: when a bundle expires, as stored now
CLAIM_EXPIRY_ALERT = "esim.claim_expiry_alert"  # local: the bundle's "expires tomorrow" alert, once
SEND_ALERT = "esim.send_alert"  # local: an alert's e-mail or webhook queued, and the alert marked sent
RESEND_ALERTS = "esim.resend_alerts"  # housekeeping: alerts whose claiming run died before sending them
ALERT_RESEND_PATCH = "housekeeping-alert-resend"


class UnsentAlerts(BaseModel):
    claimed_before: datetime  # alerts claimed since are left to the run that claimed them
    limit: int = Field(gt=0)


class RefreshEsim(BaseModel):
    iccid: str
    max_age_s: int  # a copy read from the supplier more recently than this is left as it is
    supplier_task_queue: str
    budget_s: int = 20  # how long supplier faults are retried before the read is given up


class RefreshOutcome(BaseModel):
    refreshed: bool
    detail: str
    alerts: list[EsimAlert] = []


class ExpiryWatch(BaseModel):
    bundle_id: uuid.UUID
    notice_s: int = 24 * 3600  # how long before the expiry the alert goes out


class ExpiryPlan(BaseModel):
    expires_at: datetime | None
    finished: bool  # expired, revoked, depleted or gone: nothing to warn about


# -- orders ----------------------------------------------------------------------------------------------
CREATE_ORDER_RECORD = "orders.create_record"
SET_ORDER_STATUS = "orders.set_status"
STORE_ESIMS = "orders.store_esims"
HOLD_FUNDS = "ledger.hold_funds"
POST_HOLD = "ledger.post_hold"
VOID_HOLD = "ledger.void_hold"
PLACE_SUPPLIER_ORDER = "esimgo.place_order"
FETCH_INSTALL_DETAILS = "esimgo.fetch_install_details"
RELEASE_SUPPLIER_ORDER = "esimgo.release_order"  # a failed order's bought bundles back to our balance
# Orders waiting for eSIM Go are bought together: one multi-line supplier order, a line per order.
PLACE_SUPPLIER_BATCH = "esimgo.place_batch"  # supplier queue: one eSIM Go order for a batch's orders
ASK_FOR_PURCHASE = "esimgo.ask_for_purchase"  # local: an order's purchase request to its batcher
SUPPLIER_BATCHING_PATCH = "supplier-batching"  # orders recorded before batching bought alone
SUPPLIER_BATCHER_WORKFLOW = "SupplierOrders"
PURCHASE_SIGNAL = "purchase"  # to the batcher: a PurchaseRequest
ANSWER_SIGNAL = "supplier_purchase"  # back to the order: a PurchaseAnswer
BATCH_REFUSED = "SupplierBatchRefused"  # eSIM Go refused a multi-line order outright: its lines go alone
IN_DOUBT_ELSEWHERE = "SupplierCallInDoubtElsewhere"  # the order's row waits on another call's answer
ORDER_NOT_BUYING = "OrderNotBuying"  # the order gave up on the supplier (it compensated): nothing is bought
STOP_BUYING = "orders.stop_buying"  # local: before an order compensates, no call may buy for it any more
MAX_BATCH_BUNDLES = 5  # eSIM Go answers an order of up to 5 bundles at once (larger ones complete later)
# Retried for the order's time budget.
SUPPLIER_STEPS = frozenset({PLACE_SUPPLIER_ORDER, PLACE_SUPPLIER_BATCH, FETCH_INSTALL_DETAILS})
# Failures that stop an order for an operator instead of failing it: the supplier's data cannot be trusted.
REFERENCE_LOST = "SupplierReferenceLost"  # eSIM Go no longer knows an order reference it gave us
ICCID_CONFLICT = "IccidConflict"  # an ICCID we were given already belongs to another of our orders
INCOMPLETE_DELIVERY = "IncompleteDelivery"  # a finished supplier order with fewer eSIMs than bought
NEEDS_OPERATOR = frozenset({REFERENCE_LOST, ICCID_CONFLICT, INCOMPLETE_DELIVERY})
REFUND_FAILED = "REFUND_FAILED"  # a card order whose compensation refund Stripe refused: an admin refunds it


class PostedHold(BaseModel):
    """What posting an order's hold answers (older histories recorded None): whether this debit took the
    wallet's available balance below the vendor's low-balance threshold, decided under the wallet lock."""

    low_balance: bool = False


class OrderInput(BaseModel):
    """Everything the order workflow needs, priced by the API before the start (prices never change after)."""

    order_id: uuid.UUID
    workflow_id: str
    channel: Channel
    vendor_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None
    bundle_code: str
    quantity: int
    unit_price_minor: int
    currency: str
    wholesale_unit_minor: int
    customer_reference: str | None = None
    supplier_task_queue: str
    payment_window_s: int = 1800  # card orders: how long the customer has to pay
    supplier_retry_budget_s: int = 1800  # how long transient supplier faults are retried before giving up
    # Who asked (request provenance, for the order's record); defaults keep older histories replaying.
    client_ip: str | None = None
    user_agent: str | None = None
    # A top-up buys one bundle onto the buyer's eSIM `target_iccid` instead of new eSIMs; the activities
    # read these (older histories have neither: plain orders).
    kind: OrderKind = OrderKind.ORDER
    target_iccid: str | None = None
    # A vendor order's billing mode when placed, kept on the order for invoicing (older histories: None).
    billing_mode: BillingMode | None = None
    # Bought in a multi-line supplier order with other waiting orders (ESIMGO_BATCH_ORDERS when placed).
    supplier_batching: bool = False

    @property
    def total_minor(self) -> int:
        return self.unit_price_minor * self.quantity

    def payment(self) -> PaymentRequest:
        return PaymentRequest(
            payment_id=self.order_id,
            workflow_id=self.workflow_id,
            purpose=PaymentPurpose.ORDER,
            order_id=self.order_id,
            amount_minor=self.total_minor,
            currency=self.currency,
        )


class StatusChange(BaseModel):
    order_id: uuid.UUID
    status: OrderStatus
    failure_code: str | None = None
    failure_reason: str | None = None


class EsimInstall(BaseModel):
    iccid: str
    matching_id: str
    smdp_address: str


class SupplierOrderRef(BaseModel):
    reference: str
    completed: bool
    esims: list[EsimInstall] = []  # small orders come back with their eSIMs; large ones are read later
    line: int = 0  # the order's line in a multi-line supplier order (its eSIMs are that line's)


class SupplierBatch(BaseModel):
    """Orders bought together as one multi-line eSIM Go order, a line per order in this sequence."""

    batch_id: uuid.UUID
    order_ids: list[uuid.UUID]  # the activity reads what each buys from its order row


class LineOutcome(BaseModel):
    """One order's part of a batch: its supplier order (and eSIMs), or why not."""

    order_id: uuid.UUID
    ref: SupplierOrderRef | None = None
    code: str | None = None
    reason: str | None = None
    # True: the order fails with it (its line refused, its budget spent); False: it buys alone.
    final: bool = False


class PurchaseRequest(BaseModel):
    """An order workflow asks its supplier batcher to buy its line; the answer is signalled back."""

    request_id: uuid.UUID  # a second request of the same run (an operator's retry) is a new one
    order_id: uuid.UUID
    quantity: int  # bundles: a call holds at most MAX_BATCH_BUNDLES
    workflow_id: str  # the order's run to answer
    deadline: datetime  # the order's supplier budget ends here
    supplier_task_queue: str  # whose batcher: one per supplier account
    batcher_task_queue: str  # where the batcher's workflow runs (the order's own queue)


class PurchaseAnswer(BaseModel):
    request_id: uuid.UUID
    outcome: LineOutcome


class BatcherState(BaseModel):
    """A supplier batcher's input; requests still waiting carry over when its history starts afresh."""

    supplier_task_queue: str
    waiting: list[PurchaseRequest] = []
    alone: list[uuid.UUID] = []  # waiting requests of a refused call, each to be sent on its own
    # Tunables (a test, or an operator starting it by hand, may set them; they carry over).
    max_in_flight: int = 4  # supplier calls out at once; more would only queue behind the supplier pacing
    answers_per_run: int = 500  # then the history starts afresh (continue-as-new), carrying what waits
    max_waiting: int = 1000  # more waiting are told to buy alone (bounds the history and what carries over)
    idle_s: int = 600  # with nothing to do for this long the run ends; the next request starts another


class BatcherStatus(BaseModel):
    waiting: int
    in_flight: int
    answered: int  # in this run


def batcher_workflow_id(supplier_task_queue: str) -> str:
    """One batcher per supplier account, whose calls share the account's rate-limited queue."""
    return f"supplier-orders-{supplier_task_queue}"


class StoreEsims(BaseModel):
    order_id: uuid.UUID
    bundle_code: str
    # How many the order bought: storing fewer is an incomplete delivery. 0 (no check) only in histories
    # recorded before the check existed.
    quantity: int = 0
    esims: list[EsimInstall]


# -- card payments -------------------------------------------------------------------------------------
OPEN_PAYMENT = "payments.open"
CANCEL_PAYMENT = "payments.cancel"
RECORD_PAYMENT = "payments.record"
REFUND_PAYMENT = "payments.refund"
QUEUE_ESIMS_READY = "notifications.esims_ready"
INTENT_MISSING = "INTENT_MISSING"  # Stripe has no such PaymentIntent: nothing can be paid through it
CREDIT_TOPUP = "ledger.credit_topup"


class PaymentRequest(BaseModel):
    """A PaymentIntent to open for an order or a wallet top-up; the amount is ours, never the client's."""

    payment_id: uuid.UUID
    workflow_id: str
    purpose: PaymentPurpose
    order_id: uuid.UUID | None = None
    vendor_id: uuid.UUID | None = None
    amount_minor: int
    currency: str

    @property
    def metadata(self) -> dict[str, str]:
        ids = {"order_id": self.order_id, "vendor_id": self.vendor_id, "payment_id": self.payment_id}
        return {"workflow_id": self.workflow_id} | {k: str(v) for k, v in ids.items() if v}


class PaymentState(BaseModel):
    """The payments row moves forward only: a late `processing` never undoes `succeeded`."""

    intent_id: str
    status: PaymentStatus
    failure_message: str | None = None


class RefundRequest(BaseModel):
    payment: PaymentRequest
    intent_id: str
    reason: str


class TopupInput(BaseModel):
    topup_id: uuid.UUID
    workflow_id: str
    vendor_id: uuid.UUID
    amount_minor: int
    currency: str
    payment_window_s: int

    def payment(self) -> PaymentRequest:
        return PaymentRequest(
            payment_id=self.topup_id,
            workflow_id=self.workflow_id,
            purpose=PaymentPurpose.TOPUP,
            vendor_id=self.vendor_id,
            amount_minor=self.amount_minor,
            currency=self.currency,
        )


# -- refunds -------------------------------------------------------------------------------------------
RESERVE_REFUND = "refunds.reserve"
SETTLE_REFUND = "refunds.settle"
CREDIT_REFUND = "ledger.credit_refund"
CREATE_CARD_REFUND = "payments.create_refund"
READ_CARD_REFUND = "payments.read_refund"
REVOKE_BUNDLES = "esimgo.revoke_bundles"


class RefundInput(BaseModel):
    """What was asked for; the amount left out means "everything not yet refunded"."""

    refund_id: uuid.UUID
    workflow_id: str
    order_id: uuid.UUID
    amount_minor: int | None = None
    reason: str
    actor: str
    allow_used: bool = False  # admin override: refund an eSIM that has been used
    vendor_id: uuid.UUID | None = None  # set when a vendor asks: only its own orders
    supplier_task_queue: str
    poll_s: int = 60  # how often a pending card refund is read back when no event comes
    watch_s: int = 7 * 24 * 3600  # how long a succeeded card refund is watched for a late failure
    client_ip: str | None = None  # who asked, as for orders
    user_agent: str | None = None


class RevokeBundle(BaseModel):
    iccid: str
    bundle_name: str


class RefundPlan(BaseModel):
    """The reserved refund: the amount is counted against the order from here on."""

    amount_minor: int
    currency: str
    channel: Channel
    vendor_id: uuid.UUID | None = None
    intent_id: str | None = None
    kind: OrderKind = OrderKind.ORDER  # a top-up's bundle is revoked by name on an eSIM it does not own


class CardRefund(BaseModel):
    payment: PaymentRequest
    intent_id: str
    amount_minor: int
    idempotency_key: str
    reason: str


# Supplier cost: what eSIM Go charges for an order's bundles, booked once when the order completes and
# credited back when a full refund revokes its bundles with refundToBalance.
BOOK_SUPPLIER_COST = "ledger.book_supplier_cost"
CREDIT_SUPPLIER_COST = "ledger.credit_supplier_cost"
SUPPLIER_COST_PATCH = "book-supplier-cost"  # orders and refunds recorded before cost booking have neither
TOPUP_REFUND_PATCH = "topup-refund-release"  # refunds of top-ups: their one bundle, not the eSIM


class SupplierCredit(BaseModel):
    """Bundles a refund revoked at eSIM Go: their wholesale cost comes back to us."""

    refund_workflow_id: str
    order_id: uuid.UUID
    revoked: int


class RefundSettlement(BaseModel):
    refund_id: uuid.UUID
    outcome: RefundStatus
    provider_refund_id: str | None = None
    failure_reason: str | None = None


# -- reconciliation ------------------------------------------------------------------------------------
OPEN_RECONCILIATION = "reconciliation.open"
CLOSE_RECONCILIATION = "reconciliation.close"
FIND_UNCLAIMED_SUPPLIER_ORDERS = "reconciliation.find_unclaimed_supplier_orders"  # supplier queue
RESOLVE_SUPPLIER_ORDER = "reconciliation.resolve_supplier_order"  # supplier queue
RECONCILE_STRIPE = "reconciliation.reconcile_stripe"
FIND_STUCK_ORDERS = "reconciliation.find_stuck_orders"

RECONCILIATION_ACTOR = "system:reconciliation"


class ReconciliationInput(BaseModel):
    """A run compares the last `window_minutes`; discrepancies younger than `grace_minutes` are left to
    the workflows still handling them. `run_id` is None for scheduled runs (the workflow picks one)."""

    run_id: uuid.UUID | None = None
    window_minutes: int
    grace_minutes: float
    supplier_task_queue: str
    requested_by: str = "system:schedule"


class ReconciliationWindow(BaseModel):
    run_id: uuid.UUID
    workflow_id: str
    requested_by: str
    since: datetime  # compare what was created from here...
    settled_before: datetime  # ...and act only on what is older than this


class UnclaimedSupplierOrder(BaseModel):
    reference: str
    bundle_name: str
    quantity: int
    created_at: datetime | None = None
    # The eSIM (row id) it put its bundle on when we held that eSIM already: a top-up's purchase.
    topup_of: uuid.UUID | None = None
    # A multi-line supplier order's lines (bundle name, quantity), the first as above; empty: one line.
    lines: list[tuple[str, int]] = []


class SupplierOrderCase(BaseModel):
    window: ReconciliationWindow
    order: UnclaimedSupplierOrder


class CheckOutcome(BaseModel):
    """What one check found (new findings by kind) and what it could not check."""

    findings: dict[str, int] = {}
    notes: list[str] = []

    def merge(self, other: CheckOutcome) -> CheckOutcome:
        counts = dict(self.findings)
        for kind, n in other.findings.items():
            counts[kind] = counts.get(kind, 0) + n
        return CheckOutcome(findings=counts, notes=self.notes + other.notes)


class ReconciliationEnd(BaseModel):
    run_id: uuid.UUID
    outcome: CheckOutcome
    errors: list[str] = []


# -- notifications: the e-mail outbox ------------------------------------------------------------------
from enum import StrEnum  # noqa: E402  (this section was appended)

QUEUE_NOTIFICATION = "notifications.queue"  # local: write the outbox row, start its delivery workflow
SEND_NOTIFICATION = "notifications.send"
FAIL_NOTIFICATION = "notifications.fail"  # local: the retry budget is spent
NOTIFICATION_PATCH = "email-notifications"  # workflows that queue messages; older histories do not
NOTIFICATION_WORKFLOW = "Notification"


def notification_workflow_id(notification_id: object) -> str:
    return f"notification-{notification_id}"


class MailTemplate(StrEnum):
    ESIMS_READY = "esims_ready"
    PAYMENT_RECEIPT = "payment_receipt"
    PAYMENT_FAILED = "payment_failed"
    ORDER_CLOSED = "order_closed"  # expired or canceled before payment
    ORDER_REFUNDED = "order_refunded"  # paid, then refunded because the supplier failed
    REFUND_SUCCEEDED = "refund_succeeded"
    TOPUP_RECEIPT = "topup_receipt"
    LOW_BALANCE = "low_balance"
    ESIM_USAGE = "esim_usage"  # a bundle crossed 80 % or 100 % of its data
    ESIM_EXPIRING = "esim_expiring"  # a bundle expires within a day


class Notify(BaseModel):
    """A message to queue, by ids only: addresses, names and install codes are read from the database by
    the activity, so none of them reaches a workflow history."""

    template: MailTemplate
    order_id: uuid.UUID | None = None
    refund_id: uuid.UUID | None = None
    topup_id: uuid.UUID | None = None
    vendor_id: uuid.UUID | None = None
    occurrence: str | None = None  # tells repeated events apart in the dedupe key (the n-th decline)


class Delivery(BaseModel):
    """The Notification workflow's input: which outbox row, and how long SMTP failures are retried."""

    notification_id: uuid.UUID
    retry_budget_s: int = 6 * 3600


class DeliveryOutcome(BaseModel):
    sent: bool
    detail: str | None = None


# -- vendor webhooks ---------------------------------------------------------------------------------------
EMIT_WEBHOOK = "webhooks.emit"  # local: write the delivery row (once per event), start its workflow
SEND_WEBHOOK = "webhooks.send"  # one signed POST; records the attempt on the row
FINISH_WEBHOOK = "webhooks.finish"  # local: the window is spent (or the event cannot be sent): FAILED
WEBHOOK_PATCH = "vendor-webhooks"  # workflows that emit vendor events; older histories do not
# Emissions added later to paths already behind WEBHOOK_PATCH: histories recorded with it do not have them.
ORDER_REFUNDED_PATCH = "vendor-webhooks-order-refunded"  # refunds: `order.refunded` on a full refund
LOW_BALANCE_PATCH = "low-balance-alerts"  # wallet orders: `wallet.low_balance` and its e-mail
WEBHOOK_WORKFLOW = "WebhookDelivery"
WEBHOOK_EVENT_NAMESPACE = uuid.UUID("5f1c7f0e-7a53-4c8e-9a57-0b8f1f2f8e11")


def webhook_workflow_id(event_id: str) -> str:
    return f"webhook-{event_id}"


def webhook_event_id(emitter_workflow_id: str, event_type: str) -> str:
    """Deterministic: one event per emitting workflow run id and type, whatever is replayed or retried."""
    return "evt_" + uuid.uuid5(WEBHOOK_EVENT_NAMESPACE, f"{emitter_workflow_id}/{event_type}").hex


class EmitWebhook(BaseModel):
    """An event to emit, by ids only: the payload (ICCIDs, LPA strings) is read from the database by the
    activity and never reaches a workflow history."""

    event_type: str
    event_id: str
    order_id: uuid.UUID | None = None
    refund_id: uuid.UUID | None = None
    topup_id: uuid.UUID | None = None
    alert_id: uuid.UUID | None = None  # esim.usage_threshold / esim.expiring


class WebhookJob(BaseModel):
    """The WebhookDelivery workflow's input: which row, and how long failures are retried."""

    delivery_id: uuid.UUID
    window_s: int = 3 * 24 * 3600
    first_backoff_s: float = 30  # doubled after each failed attempt, up to max_backoff_s
    max_backoff_s: float = 3600


class WebhookAttempt(BaseModel):
    delivery_id: uuid.UUID
    next_attempt_at: datetime | None = None  # when the workflow will try again should this attempt fail


class WebhookAttemptResult(BaseModel):
    delivered: bool
    permanent: bool = False  # no point trying again (URL refused, vendor gone, already delivered)
    status_code: int | None = None
    error: str | None = None


class WebhookEnd(BaseModel):
    delivery_id: uuid.UUID
    error: str | None = None


class WebhookOutcome(BaseModel):
    delivered: bool
    attempts: int
    detail: str | None = None


PRUNE = "housekeeping.prune"


class PruneBatch(BaseModel):
    chore: Chore
    cutoff: datetime
    limit: int = Field(gt=0)


class Pruned(BaseModel):
    chore: Chore
    rows: int


READ_SUPPLIER_BALANCE = "supplier.read_balance"


class SupplierBalanceCheck(BaseModel):
    """`low_balance_minor` (in the supplier's currency) or None: no threshold, never low."""

    low_balance_minor: int | None = Field(default=None, ge=0)


class SupplierBalance(BaseModel):
    currency: str
    balance_minor: int
    low: bool


# -- POSTPAID invoicing ------------------------------------------------------------------------------------
LIST_INVOICEABLE = "invoicing.list_vendors"
ISSUE_INVOICE = "invoicing.issue"


class InvoicePeriod(BaseModel):
    """One month (YYYY-MM, UTC), for every POSTPAID vendor or just `vendor_id`."""

    period: str = Field(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$")
    vendor_id: uuid.UUID | None = None


class IssueInvoice(BaseModel):
    vendor_id: uuid.UUID
    period: str = Field(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$")


class IssuedInvoice(BaseModel):
    """Ids and amounts only (no names or addresses); `created` is False when it existed already."""

    invoice_id: uuid.UUID
    number: str
    total_minor: int
    created: bool
