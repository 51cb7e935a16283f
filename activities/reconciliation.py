"""Reconciliation: what eSIM Go and Stripe hold, compared with our records, and put right where that is
safe. Each check is retried by Temporal and does nothing twice: the supplier's state is read before
anything is revoked, a finding is written once per run and subject, and every action (adopt, revoke,
record) commits in one transaction with its `audit_logs` row.

- an eSIM Go order none of ours claims (a call that committed after we gave up): adopted by an order of
  ours that still waits for it (same bundle and quantity, older, PROVISIONING with its workflow still
  running, no reference, no eSIMs; one whose call is in doubt first), whose own workflow then picks it up;
  a multi-line one only by the very call that sent it (its rows, line by line, all still waiting with
  their workflows running), for all of them at once; otherwise the unused bundles of every line are
  revoked with refundToBalance (used ones cannot be refunded and are reported). A supplier order once
  revoked (or found used) is never adopted;
- Stripe: a succeeded PaymentIntent whose order or payment does not show the money (not paid, payment not
  succeeded, or the order FAILED without REFUND_FAILED) is reported, unless the order's workflow still runs
  (it is handling it); a refund made outside TTelGo (the Stripe dashboard) is recorded on the order and
  payment; disputes are reported;
- an order not in a terminal state, or in NEEDS_ATTENTION, whose workflow is closed or missing is reported
  as stuck.

Findings are counted on the metrics after their transaction commits, so a retried activity does not count
them again. A listing that hits its limit (supplier pages, Stripe pages, the stuck-order scan) says so in
the run's notes.
"""

from __future__ import annotations

import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from activities.contracts import (
    CLOSE_RECONCILIATION,
    FIND_STUCK_ORDERS,
    FIND_UNCLAIMED_SUPPLIER_ORDERS,
    OPEN_RECONCILIATION,
    RECONCILE_STRIPE,
    RECONCILIATION_ACTOR,
    REFUND_FAILED,
    RESOLVE_SUPPLIER_ORDER,
    CheckOutcome,
    ReconciliationEnd,
    ReconciliationWindow,
    SupplierOrderCase,
    UnclaimedSupplierOrder,
)
from activities.esimgo import (
    CLOCK_SKEW,
    FINISHED,
    call_rows,
    claim_supplier_lines,
    esims_of_line,
    is_purchase_of,
    purchase_of,
)
from activities.ledger import book_card_refund
from activities.refunds import follow_refunded_money, follows_refunds
from activities.supplier_errors import as_application_error
from ttelgo.audit import record_action
from ttelgo.esimgo import EsimGoClient, SupplierError, SupplierOrder
from ttelgo.models import (
    TERMINAL_ORDER_STATES,
    AuditLog,
    Esim,
    FindingAction,
    FindingKind,
    Order,
    OrderKind,
    OrderStatus,
    Payment,
    PaymentPurpose,
    PaymentStatus,
    ReconciliationFinding,
    ReconciliationRun,
    ReconciliationStatus,
    Refund,
    RefundStatus,
)
from ttelgo.payments import StripeGateway
from ttelgo.payments.gateway import ListingUnsupported, StripeRefund

# An order in one of these is waiting for its workflow; once that workflow has closed, nothing moves it.
# NEEDS_ATTENTION is left out: it already waits for an operator by design.
NOT_TERMINAL = frozenset(OrderStatus) - TERMINAL_ORDER_STATES - {OrderStatus.NEEDS_ATTENTION}
NEVER_PAID = (
    OrderStatus.CREATED,
    OrderStatus.PAYMENT_PENDING,
    OrderStatus.PAYMENT_FAILED,
    OrderStatus.EXPIRED,
    OrderStatus.CANCELED,
)
# Stuck when its workflow has gone: not terminal, or stopped for an operator who can no longer be heard
# (the `resolve` update needs the workflow).
STUCK_CANDIDATES = (*NOT_TERMINAL, OrderStatus.NEEDS_ATTENTION)
# Only an order whose workflow still runs picks up a reference claimed for it (on its next attempt). An
# order in NEEDS_ATTENTION without a reference arises only once its workflow has ended: not a candidate.
WAITING_FOR_SUPPLIER = OrderStatus.PROVISIONING
ADOPT_CANDIDATES = 20
# The order's own supplier activity locks its row briefly; wait that long for it, then leave the supplier
# order to the next run rather than revoke what the order may still need.
ADOPT_LOCK_TIMEOUT_MS = 2000
LOCK_NOT_AVAILABLE = "55P03"
USED_BUNDLE_STATES = frozenset({"active", "depleted"})  # started: revoking refunds nothing
SETTLED_PAYMENT_STATES = (PaymentStatus.SUCCEEDED, PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.REFUNDED)
STUCK_SCAN_LIMIT = 500
# Supplier orders are listed newest first, this many pages of this many.
SUPPLIER_PAGE_SIZE = 100
SUPPLIER_MAX_PAGES = 20
# StripeGateway lists at most 100 pages of 100: a listing this long may have been cut short.
STRIPE_LISTING_LIMIT = 100 * 100


class ReconciliationActivities:
    def __init__(
        self, esimgo: EsimGoClient, stripe: StripeGateway, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        self.esimgo = esimgo
        self.stripe = stripe
        self.sessions = sessions

    # -- the run's record ----------------------------------------------------------------------------
    @activity.defn(name=OPEN_RECONCILIATION)
    async def open(self, window: ReconciliationWindow) -> None:
        async with self.sessions() as session, session.begin():
            await session.execute(
                insert(ReconciliationRun)
                .values(
                    id=window.run_id,
                    workflow_id=window.workflow_id,
                    requested_by=window.requested_by,
                    status=ReconciliationStatus.RUNNING,
                    window_start=window.since,
                    window_end=window.settled_before,
                )
                .on_conflict_do_nothing(index_elements=["id"])
            )

    @activity.defn(name=CLOSE_RECONCILIATION)
    async def close(self, end: ReconciliationEnd) -> None:
        async with self.sessions() as session, session.begin():
            run = await session.get_one(ReconciliationRun, end.run_id, with_for_update=True)
            if run.status is not ReconciliationStatus.RUNNING:
                return
            counts = await session.execute(
                select(ReconciliationFinding.kind, func.count())
                .where(ReconciliationFinding.run_id == run.id)
                .group_by(ReconciliationFinding.kind)
            )
            run.summary = {kind.value: n for kind, n in counts}
            # Notes written by the steps themselves (e.g. a listing cut short) come first.
            run.notes = list(dict.fromkeys([*run.notes, *end.outcome.notes]))
            run.errors = end.errors
            run.status = ReconciliationStatus.FAILED if end.errors else ReconciliationStatus.COMPLETED
            run.finished_at = datetime.now(UTC)
        activity.metric_meter().create_counter(
            "ttelgo_reconciliation_runs", "Reconciliation runs finished, by status"
        ).add(1, {"status": run.status.value})

    async def _note(self, window: ReconciliationWindow, note: str) -> None:
        """A note on the run from a step that answers something other than a CheckOutcome (once)."""
        async with self.sessions() as session, session.begin():
            run = await session.get(ReconciliationRun, window.run_id, with_for_update=True)
            if run is not None and note not in run.notes:
                run.notes = [*run.notes, note]

    # -- eSIM Go orders (supplier task queue) --------------------------------------------------------
    @activity.defn(name=FIND_UNCLAIMED_SUPPLIER_ORDERS)
    async def find_unclaimed_supplier_orders(
        self, window: ReconciliationWindow
    ) -> list[UnclaimedSupplierOrder]:
        """Supplier orders of the window, old enough to have been recorded, that no order of ours holds."""
        try:
            placed = await self.esimgo.recent_orders(
                window.since, per_page=SUPPLIER_PAGE_SIZE, max_pages=SUPPLIER_MAX_PAGES
            )
        except SupplierError as exc:
            raise as_application_error(exc) from exc
        if len(placed) >= SUPPLIER_PAGE_SIZE * SUPPLIER_MAX_PAGES:
            # Every page listed was full and inside the window: older ones in it were not listed.
            await self._note(
                window,
                f"supplier orders: listing stopped at {SUPPLIER_MAX_PAGES} pages of {SUPPLIER_PAGE_SIZE}; "
                "older orders in the window were not checked (shorten the window or run again)",
            )
        settled = [o for o in placed if o.created_at is not None and o.created_at < window.settled_before]
        if not settled:
            return []
        async with self.sessions() as session:
            claimed = set(
                await session.scalars(
                    select(Order.supplier_order_reference).where(
                        Order.supplier_order_reference.in_([o.reference for o in settled])
                    )
                )
            )
            unclaimed = [o for o in settled if o.reference not in claimed]
            # A purchase that applied its bundle to an eSIM we hold already was a top-up's.
            found = await session.execute(
                select(Esim.iccid, Esim.id).where(
                    Esim.iccid.in_([e.iccid for o in unclaimed for e in o.esims])
                )
            )
            held = {iccid: esim_id for iccid, esim_id in found}
        return [
            UnclaimedSupplierOrder(
                reference=o.reference,
                bundle_name=o.bundle_name,
                quantity=o.quantity,
                created_at=o.created_at,
                topup_of=next((held[e.iccid] for e in o.esims if e.iccid in held), None),
                lines=[(line.bundle_name, line.quantity) for line in o.lines] if len(o.lines) > 1 else [],
            )
            for o in unclaimed
        ]

    @activity.defn(name=RESOLVE_SUPPLIER_ORDER)
    async def resolve_supplier_order(self, case: SupplierOrderCase) -> CheckOutcome:
        """Adopt it for an order of ours that waits for it, else revoke its unused bundles."""
        supplier = case.order
        async with self.sessions() as session:
            holder = await session.scalar(
                select(Order.id).where(Order.supplier_order_reference == supplier.reference)
            )
            # Revoked (or found used) by an earlier run: never to be delivered to anyone.
            settled = await _revoked_or_used(session, supplier.reference)
        if holder is not None:
            return CheckOutcome()  # claimed since it was listed (by its workflow, or by this very step)
        try:
            if not settled:
                adopted = await (self._adopt_call(case) if supplier.lines else self._adopt(case))
                if adopted is not None:
                    return adopted
            return await self._revoke(case)
        except SupplierError as exc:
            raise as_application_error(exc) from exc

    async def _adopt(self, case: SupplierOrderCase) -> CheckOutcome | None:
        """Claims the supplier order for an order that still waits for one and whose workflow runs (so it
        picks the reference up on its next attempt): one whose own call is in doubt first, then the oldest.
        None when there is none (revoke it); a note when the one there is stays locked (the next run)."""
        supplier = case.order
        created = supplier.created_at or case.window.settled_before
        # A top-up's purchase is only ever the answer to a top-up of that eSIM, and a purchase of new
        # eSIMs only to an order of new eSIMs.
        if supplier.topup_of is None:
            same_kind = Order.kind == OrderKind.ORDER
        else:
            target = select(Esim.iccid).where(Esim.id == supplier.topup_of).scalar_subquery()
            same_kind = (Order.kind == OrderKind.TOPUP) & (Order.target_iccid == target)
        async with self.sessions() as session:
            candidates = list(
                await session.execute(
                    select(Order.id, Order.workflow_id)
                    .where(
                        same_kind,
                        Order.bundle_code == supplier.bundle_name,
                        Order.quantity == supplier.quantity,
                        Order.status == WAITING_FOR_SUPPLIER,
                        Order.supplier_order_reference.is_(None),
                        Order.deleted_at.is_(None),
                        Order.created_at <= created + CLOCK_SKEW,
                        ~_has_esims(),
                        _buying_alone(),
                    )
                    # False sorts first: a call in doubt (sent, no answer) is most likely this very one.
                    .order_by(Order.supplier_call_sent_at.is_(None), Order.created_at)
                    .limit(ADOPT_CANDIDATES)
                )
            )
        client = activity.client()
        for order_id, workflow_id in candidates:
            activity.heartbeat(str(order_id))
            if await _workflow_state(client, workflow_id) != WorkflowExecutionStatus.RUNNING.name:
                continue  # no workflow would pick the reference up: the bundles would never be delivered
            try:
                adopted = await self._claim_for(case, order_id)
            except DBAPIError as exc:
                if not _lock_not_available(exc):
                    raise
                # Its own supplier step holds it (and may be recording this very purchase): look again
                # next run rather than revoke what it may need.
                return CheckOutcome(
                    notes=[
                        f"supplier order {supplier.reference}: order {order_id} that may adopt it was busy; "
                        "left for the next run"
                    ]
                )
            if adopted is not None:
                return adopted
        return None

    async def _claim_for(self, case: SupplierOrderCase, order_id: uuid.UUID) -> CheckOutcome | None:
        supplier = case.order
        async with self.sessions() as session, session.begin():
            await session.execute(text(f"SET LOCAL lock_timeout = '{int(ADOPT_LOCK_TIMEOUT_MS)}ms'"))
            order = await session.scalar(
                select(Order)
                .where(
                    Order.id == order_id,
                    Order.status == WAITING_FOR_SUPPLIER,
                    Order.supplier_order_reference.is_(None),
                    ~_has_esims(),
                    _buying_alone(),
                )
                .with_for_update()
            )
            # The claim is the supplier activities' own (one rule for who may hold a reference); it
            # runs in a savepoint of this transaction, so the audit row commits with it or not at all.
            if order is None or not await claim_supplier_lines(
                _within(session), supplier.reference, {order.id: 0}
            ):
                return None  # moved on meanwhile (or another order holds the reference): next one
            _record_adoption(session, order, supplier.reference)
            new = await _finding(
                session,
                case.window,
                FindingKind.SUPPLIER_ORDER_ADOPTED,
                FindingAction.ADOPTED,
                supplier.reference,
                order_id=order.id,
                detail=_supplier_detail(supplier),
            )
        activity.logger.warning("adopted supplier order %s for order %s", supplier.reference, order_id)
        return _counted(FindingKind.SUPPLIER_ORDER_ADOPTED) if new else CheckOutcome()

    async def _adopt_call(self, case: SupplierOrderCase) -> CheckOutcome | None:
        """A multi-line supplier order is the answer to one call only: the one whose rows, line by line,
        are its lines. Adopted for all of them at once when they all still wait for it and their workflows
        run (each picks its line up on its next attempt); None otherwise (revoke it)."""
        supplier = case.order
        placed = await self.esimgo.get_order(supplier.reference)
        created = supplier.created_at or case.window.settled_before
        async with self.sessions() as session:
            # Calls sent (and still in doubt) before the supplier order was created, as many rows as lines.
            calls = list(
                await session.scalars(
                    select(Order.supplier_batch_id)
                    .where(
                        Order.supplier_batch_id.is_not(None),
                        Order.supplier_call_sent_at.is_not(None),
                        Order.supplier_call_sent_at <= created + CLOCK_SKEW,
                        Order.supplier_order_reference.is_(None),
                    )
                    .group_by(Order.supplier_batch_id)
                    .having(func.count() == len(placed.lines))
                    .limit(ADOPT_CANDIDATES)
                )
            )
            held = set(
                await session.scalars(
                    select(Esim.iccid).where(Esim.iccid.in_([e.iccid for e in placed.esims]))
                )
            )
        client = activity.client()
        for call_id in calls:
            async with self.sessions() as session:
                rows = list(await session.scalars(call_rows(call_id)))
            if not _is_call_of(placed, rows, held):
                continue
            for row in rows:
                activity.heartbeat(str(row.id))
                if await _workflow_state(client, row.workflow_id) != WorkflowExecutionStatus.RUNNING.name:
                    return None  # a line nobody would pick up: the bundles would never be delivered
            try:
                return await self._claim_call(case, placed, call_id, [r.id for r in rows])
            except DBAPIError as exc:
                if not _lock_not_available(exc):
                    raise
                return CheckOutcome(
                    notes=[
                        f"supplier order {supplier.reference}: the orders of call {call_id} that may adopt it "
                        "were busy; left for the next run"
                    ]
                )
        return None

    async def _claim_call(
        self, case: SupplierOrderCase, placed: SupplierOrder, call_id: uuid.UUID, order_ids: list[uuid.UUID]
    ) -> CheckOutcome | None:
        supplier = case.order
        async with self.sessions() as session, session.begin():
            await session.execute(text(f"SET LOCAL lock_timeout = '{int(ADOPT_LOCK_TIMEOUT_MS)}ms'"))
            rows = list(
                await session.scalars(
                    select(Order)
                    .where(
                        Order.id.in_(order_ids),
                        Order.status == WAITING_FOR_SUPPLIER,
                        Order.deleted_at.is_(None),
                        Order.supplier_closed_at.is_(None),
                        ~_has_esims(),
                    )
                    .order_by(Order.id)
                    .with_for_update()
                )
            )
            rows.sort(key=lambda r: r.supplier_order_line)
            # Still that call, line by line (each row's own step may have moved it on meanwhile)?
            if not _is_call_of(placed, rows, held=set()) or any(r.supplier_batch_id != call_id for r in rows):
                return None
            lines = {r.id: r.supplier_order_line for r in rows}
            if not await claim_supplier_lines(_within(session), supplier.reference, lines, call_id=call_id):
                return None
            for row in rows:
                _record_adoption(session, row, supplier.reference, lines[row.id])
            new = await _finding(
                session,
                case.window,
                FindingKind.SUPPLIER_ORDER_ADOPTED,
                FindingAction.ADOPTED,
                supplier.reference,
                order_id=rows[0].id,
                detail=_supplier_detail(supplier)
                | {"orders": [str(r.id) for r in rows], "call": str(call_id)},
            )
        activity.logger.warning("adopted supplier order %s for call %s", supplier.reference, call_id)
        return _counted(FindingKind.SUPPLIER_ORDER_ADOPTED) if new else CheckOutcome()

    async def _revoke(self, case: SupplierOrderCase) -> CheckOutcome:
        supplier = case.order
        placed = await self.esimgo.get_order(supplier.reference)
        if not placed.completed:
            return CheckOutcome(notes=[f"supplier order {supplier.reference} still processing; next run"])
        # Every line's eSIMs, each with its own line's bundle.
        bought = [
            (e.iccid, line.bundle_name)
            for i, line in enumerate(placed.lines)
            for e in await esims_of_line(self.esimgo, placed, i)
        ]
        revoked, used, already = [], [], []
        for iccid, bundle_name in bought:
            activity.heartbeat(iccid)
            bundles = [b for b in await self.esimgo.get_esim_bundles(iccid) if b.name == bundle_name]
            live = [b for b in bundles if b.state not in FINISHED]
            if any(b.state in USED_BUNDLE_STATES for b in live):
                used.append(iccid)
            elif live:
                if not revoked and await self._claimed(supplier.reference):
                    return CheckOutcome()  # an order's own retry took it meanwhile: it is theirs now
                await self.esimgo.revoke_bundle(iccid, bundle_name, refund_to_balance=True)
                revoked.append(iccid)
            elif any(b.state == "revoked" for b in bundles):
                already.append(iccid)
        new: list[FindingKind] = []
        async with self.sessions() as session, session.begin():
            # Bundles found revoked with no audit row: this step revoked them on an attempt that died
            # before recording it. With an audit row, an earlier run did, and there is nothing to add.
            unrecorded = bool(already) and not await _revoke_audited(session, supplier.reference)
            if revoked or unrecorded:
                record_action(
                    session,
                    actor=RECONCILIATION_ACTOR,
                    action="reconciliation.supplier_order.revoke",
                    target_type="supplier_order",
                    target_id=supplier.reference,
                    after={
                        "revoked_iccids": revoked + already,
                        "used_iccids": used,
                        "refund_to_balance": True,
                    },
                    reason="no order of ours claims this supplier order (late commit after our timeout)",
                )
                if await _finding(
                    session,
                    case.window,
                    FindingKind.SUPPLIER_ORDER_REVOKED,
                    FindingAction.REVOKED,
                    supplier.reference,
                    detail=_supplier_detail(supplier) | {"iccids": revoked + already},
                ):
                    new.append(FindingKind.SUPPLIER_ORDER_REVOKED)
            if used and await _finding(
                session,
                case.window,
                FindingKind.SUPPLIER_BUNDLE_USED,
                FindingAction.REPORTED,
                supplier.reference,
                detail=_supplier_detail(supplier) | {"iccids": used},
            ):
                new.append(FindingKind.SUPPLIER_BUNDLE_USED)
        return _counted(*new)

    async def _claimed(self, reference: str) -> bool:
        async with self.sessions() as session:
            return (
                await session.scalar(select(Order.id).where(Order.supplier_order_reference == reference))
            ) is not None

    # -- Stripe ---------------------------------------------------------------------------------------
    @activity.defn(name=RECONCILE_STRIPE)
    async def reconcile_stripe(self, window: ReconciliationWindow) -> CheckOutcome:
        outcome = CheckOutcome()
        intents = await self.stripe.list_intents(window.since)
        outcome = outcome.merge(_listing_note("payment intents", intents))
        for intent in intents:
            if intent.status != "succeeded" or intent.created >= window.settled_before:
                continue
            outcome = outcome.merge(await self._check_paid(window, intent.id, intent.metadata))
        activity.heartbeat("refunds")
        refunds = await self.stripe.list_refunds(window.since)
        outcome = outcome.merge(_listing_note("refunds", refunds))
        for refund in refunds:
            if refund.status != "succeeded" or refund.metadata.get("workflow_id"):
                continue  # ours: its refund workflow records it
            outcome = outcome.merge(await self._record_external_refund(window, refund))
        activity.heartbeat("disputes")
        try:
            disputes = await self.stripe.list_disputes(window.since)
        except ListingUnsupported as exc:
            return outcome.merge(CheckOutcome(notes=[f"disputes not checked: {exc}"]))
        outcome = outcome.merge(_listing_note("disputes", disputes))
        for dispute in disputes:
            intent_id = dispute.payment_intent or (
                await self.stripe.intent_of_charge(dispute.charge) if dispute.charge else None
            )
            async with self.sessions() as session, session.begin():
                payment = await _order_payment(session, intent_id)
                if payment is None:
                    continue
                detail = {
                    "payment_intent": intent_id,
                    "status": dispute.status,
                    "reason": dispute.reason,
                    "amount_minor": dispute.amount_minor,
                    "currency": dispute.currency,
                }
                new = await _finding(
                    session,
                    window,
                    FindingKind.DISPUTE,
                    FindingAction.REPORTED,
                    dispute.id,
                    order_id=payment.order_id,
                    detail=detail,
                )
            if new:
                outcome = outcome.merge(_counted(FindingKind.DISPUTE))
        return outcome

    async def _check_paid(
        self, window: ReconciliationWindow, intent_id: str, metadata: dict[str, str]
    ) -> CheckOutcome:
        """A succeeded intent of one of our orders whose money our records do not show: the order is not
        paid or paid by another intent, its payment is not succeeded, or the order FAILED keeping it (a
        failed order whose refund Stripe refused is FAILED with REFUND_FAILED: an operator knows). An order
        whose workflow still runs is left to it: the payment's webhook may be on its way."""
        try:
            order_id = uuid.UUID(metadata.get("order_id", ""))
        except ValueError:
            return CheckOutcome()  # a top-up, or not ours
        async with self.sessions() as session:
            order = await session.get(Order, order_id)
            if order is None:
                return CheckOutcome()  # another system's intent on the same account
            payment = await session.scalar(select(Payment).where(Payment.order_id == order.id))
            problem = _payment_problem(order, payment, intent_id)
            if problem is None:
                return CheckOutcome()
            workflow_id = order.workflow_id
            detail = {
                "order_status": order.status.value,
                "failure_code": order.failure_code,
                "payment_status": payment.status.value if payment else None,
                "recorded_intent": payment.provider_payment_id if payment else None,
                "problem": problem,
            }
        workflow_state = await _workflow_state(activity.client(), workflow_id)
        if workflow_state == WorkflowExecutionStatus.RUNNING.name:
            return CheckOutcome()
        async with self.sessions() as session, session.begin():
            new = await _finding(
                session,
                window,
                FindingKind.PAYMENT_NOT_RECORDED,
                FindingAction.REPORTED,
                intent_id,
                order_id=order_id,
                detail=detail | {"workflow": workflow_state},
            )
        return _counted(FindingKind.PAYMENT_NOT_RECORDED) if new else CheckOutcome()

    async def _record_external_refund(
        self, window: ReconciliationWindow, refund: StripeRefund
    ) -> CheckOutcome:
        """A refund nobody here asked for: the money has gone back, so our records follow it, and the
        ledger too: once recorded, its amount leaves REVENUE as a refund of ours does (`book_card_refund`,
        after the record commits; a crash in between is made good by the retry or the next run, and the
        transfer ids are the refund's, so nothing is booked twice)."""
        outcome = CheckOutcome()
        if await self._recorded(refund.id) is None:
            outcome = await self._record_new_external_refund(window, refund)
        recorded = await self._recorded(refund.id)
        if recorded is not None:
            await book_card_refund(self.sessions, recorded)
        return outcome

    async def _recorded(self, stripe_refund_id: str) -> uuid.UUID | None:
        async with self.sessions() as session:
            return await session.scalar(
                select(Refund.id).where(Refund.provider_refund_id == stripe_refund_id)
            )

    async def _record_new_external_refund(
        self, window: ReconciliationWindow, refund: StripeRefund
    ) -> CheckOutcome:
        intent_id = refund.payment_intent or (
            await self.stripe.intent_of_charge(refund.charge) if refund.charge else None
        )
        async with self.sessions() as session:
            found = await _order_payment(session, intent_id)
        if found is None:
            return CheckOutcome()  # not one of our order payments
        async with self.sessions() as session, session.begin():
            # Locks in the order refunds take them (activities/refunds.py: refund, order, payment), so
            # the two never wait on each other: the order first, then its payment.
            order = await session.scalar(select(Order).where(Order.id == found.order_id).with_for_update())
            assert order is not None
            payment = await session.scalar(select(Payment).where(Payment.id == found.id).with_for_update())
            assert payment is not None
            if await session.scalar(select(Refund.id).where(Refund.provider_refund_id == refund.id)):
                return CheckOutcome()  # recorded meanwhile
            kind = await self._record_refund_locked(window, refund, intent_id, order, payment, session)
        return _counted(kind) if kind else CheckOutcome()

    async def _record_refund_locked(
        self,
        window: ReconciliationWindow,
        refund: StripeRefund,
        intent_id: str | None,
        order: Order,
        payment: Payment,
        session: AsyncSession,
    ) -> FindingKind | None:
        """Records the refund on the order and payment the caller holds locked; the new finding's kind."""
        left = order.total_minor - order.refunded_minor
        detail: dict[str, Any] = {
            "payment_intent": intent_id,
            "amount_minor": refund.amount_minor,
            "currency": refund.currency,
        }
        if refund.currency != order.currency or refund.amount_minor > left:
            detail["problem"] = f"{refund.amount_minor} {refund.currency} does not fit: {left} left to refund"
            if await _finding(
                session,
                window,
                FindingKind.EXTERNAL_REFUND_UNRECORDABLE,
                FindingAction.REPORTED,
                refund.id,
                order_id=order.id,
                detail=detail,
            ):
                return FindingKind.EXTERNAL_REFUND_UNRECORDABLE
            return None
        before = _money_snapshot(order, payment)
        session.add(
            Refund(
                order_id=order.id,
                status=RefundStatus.SUCCEEDED,
                amount_minor=refund.amount_minor,
                currency=order.currency,
                reason="refunded outside TTelGo (found in Stripe by reconciliation)",
                requested_by=RECONCILIATION_ACTOR,
                workflow_id=f"external-refund-{refund.id}",
                provider_refund_id=refund.id,
                settled_at=refund.created,
            )
        )
        order.refunded_minor += refund.amount_minor
        await session.flush()
        if follows_refunds(order):  # the same rules as a refund of ours
            await follow_refunded_money(session, order, payment)
        record_action(
            session,
            actor=RECONCILIATION_ACTOR,
            action="reconciliation.refund.record_external",
            target_type="order",
            target_id=order.id,
            before=before,
            after=_money_snapshot(order, payment) | {"stripe_refund": refund.id},
            reason="a Stripe refund made outside TTelGo (e.g. in the dashboard)",
        )
        new = await _finding(
            session,
            window,
            FindingKind.EXTERNAL_REFUND_RECORDED,
            FindingAction.RECORDED,
            refund.id,
            order_id=order.id,
            detail=detail | {"order_status": order.status.value},
        )
        return FindingKind.EXTERNAL_REFUND_RECORDED if new else None

    # -- orders whose workflow has gone ---------------------------------------------------------------
    @activity.defn(name=FIND_STUCK_ORDERS)
    async def find_stuck_orders(self, window: ReconciliationWindow) -> CheckOutcome:
        """Orders not finished (or stopped for an operator) and left alone for a while, whose workflow is
        closed or missing. Not limited to the window: an old stuck order matters most."""
        client = activity.client()
        async with self.sessions() as session:
            orders = list(
                await session.execute(
                    select(Order.id, Order.workflow_id, Order.status, Order.failure_code)
                    .where(
                        Order.status.in_(STUCK_CANDIDATES),
                        Order.deleted_at.is_(None),
                        Order.updated_at < window.settled_before,
                    )
                    .order_by(Order.created_at)
                    .limit(STUCK_SCAN_LIMIT + 1)
                )
            )
        outcome = CheckOutcome()
        if len(orders) > STUCK_SCAN_LIMIT:
            orders = orders[:STUCK_SCAN_LIMIT]
            outcome = CheckOutcome(
                notes=[
                    f"stuck orders: only the oldest {STUCK_SCAN_LIMIT} unfinished orders were checked; "
                    "run again once they are settled"
                ]
            )
        for order_id, workflow_id, status, failure_code in orders:
            activity.heartbeat(str(order_id))
            workflow_state = await _workflow_state(client, workflow_id)
            if workflow_state == WorkflowExecutionStatus.RUNNING.name:
                continue
            detail = {"status": status.value, "workflow_id": workflow_id, "workflow": workflow_state}
            if status is OrderStatus.NEEDS_ATTENTION:
                # Its workflow can no longer take an operator's `resolve`: settle it by hand.
                detail["failure_code"] = failure_code
            async with self.sessions() as session, session.begin():
                new = await _finding(
                    session,
                    window,
                    FindingKind.ORDER_STUCK,
                    FindingAction.REPORTED,
                    str(order_id),
                    order_id=order_id,
                    detail=detail,
                )
            if new:
                outcome = outcome.merge(_counted(FindingKind.ORDER_STUCK))
        return outcome


async def _workflow_state(client: Client, workflow_id: str) -> str:
    """RUNNING, another closed status's name, or MISSING."""
    try:
        described = await client.get_workflow_handle(workflow_id).describe()
    except RPCError as exc:
        if exc.status is not RPCStatusCode.NOT_FOUND:
            raise
        return "MISSING"
    return described.status.name if described.status else "UNKNOWN"


def _payment_problem(order: Order, payment: Payment | None, intent_id: str) -> str | None:
    """What our records get wrong about a succeeded intent for `order`, or None."""
    recorded = payment is not None and payment.provider_payment_id == intent_id
    if order.status in NEVER_PAID:
        return "order not paid"
    if not recorded:
        return "order paid by another intent" if payment is not None else "payment not recorded"
    assert payment is not None
    if payment.status not in SETTLED_PAYMENT_STATES:
        return f"payment recorded as {payment.status.value}"
    if (
        order.status is OrderStatus.FAILED
        and order.failure_code != REFUND_FAILED
        and order.refunded_minor < order.total_minor
    ):
        return "money kept for a failed order"
    return None


def _record_adoption(session: AsyncSession, order: Order, reference: str, line: int | None = None) -> None:
    """The audit row of an adoption, in the claim's transaction (a line is named for a multi-line order)."""
    after: dict[str, Any] = {"supplier_order_reference": reference}
    if line is not None:
        after["supplier_order_line"] = line
    record_action(
        session,
        actor=RECONCILIATION_ACTOR,
        action="reconciliation.supplier_order.adopt",
        target_type="order",
        target_id=order.id,
        before={"status": order.status.value, "supplier_order_reference": None},
        after=after,
        reason="a supplier order placed for this order was never recorded (late commit or crash)",
    )


def _has_esims() -> Any:
    return select(Esim.id).where(Esim.order_id == Order.id).exists()


def _buying_alone() -> Any:
    """Still buying (its row not closed), and not in doubt in a call of several rows: such a call's
    supplier order is adopted for all of its rows or none (`_adopt_call`), never a row on its own (the
    call's own retry would then miss the rest of it and buy them again)."""
    neighbour = aliased(Order)
    in_a_larger_call = (
        select(neighbour.id)
        .where(
            neighbour.supplier_batch_id == Order.supplier_batch_id,
            neighbour.id != Order.id,
            neighbour.supplier_call_sent_at.is_not(None),
            neighbour.supplier_order_reference.is_(None),
        )
        .exists()
    )
    return Order.supplier_closed_at.is_(None) & (Order.supplier_call_sent_at.is_(None) | ~in_a_larger_call)


def _lock_not_available(exc: DBAPIError) -> bool:
    """A `lock_timeout` that expired (SQLSTATE 55P03)."""
    for error in (exc.orig, getattr(exc.orig, "__cause__", None)):
        if getattr(error, "sqlstate", None) == LOCK_NOT_AVAILABLE:
            return True
    return False


def _listing_note(what: str, listed: list[Any]) -> CheckOutcome:
    if len(listed) < STRIPE_LISTING_LIMIT:
        return CheckOutcome()
    return CheckOutcome(
        notes=[
            f"stripe: the listing of {what} stopped at its limit of {STRIPE_LISTING_LIMIT}; older ones in "
            "the window were not checked (shorten the window or run again)"
        ]
    )


def _within(session: AsyncSession) -> async_sessionmaker[AsyncSession]:
    """Sessions that join `session`'s transaction through a savepoint (for a helper that opens its own)."""

    @contextlib.asynccontextmanager
    async def joined() -> AsyncIterator[AsyncSession]:
        connection = await session.connection()
        async with AsyncSession(bind=connection, join_transaction_mode="create_savepoint") as inner:
            yield inner

    return joined  # type: ignore[return-value]


async def _finding(
    session: AsyncSession,
    window: ReconciliationWindow,
    kind: FindingKind,
    action: FindingAction,
    subject: str,
    *,
    order_id: uuid.UUID | None = None,
    detail: dict[str, Any] | None = None,
) -> bool:
    """Adds the finding to the caller's transaction; False when this run already has it (a retry)."""
    inserted = await session.scalar(
        insert(ReconciliationFinding)
        .values(
            run_id=window.run_id,
            kind=kind,
            action=action,
            subject=subject[:255],
            order_id=order_id,
            detail=detail or {},
        )
        .on_conflict_do_nothing(index_elements=["run_id", "kind", "subject"])
        .returning(ReconciliationFinding.id)
    )
    return inserted is not None


def _counted(*kinds: FindingKind) -> CheckOutcome:
    """New findings, counted on the worker's metrics endpoint. Call it once their transaction has
    committed: a finding written by an attempt that then failed is not new to its retry, so it is counted
    by nobody else, and one that never committed is not counted at all."""
    counter = activity.metric_meter().create_counter(
        "ttelgo_reconciliation_findings", "Discrepancies found by reconciliation, by kind"
    )
    for kind in kinds:
        counter.add(1, {"kind": kind.value})
    return CheckOutcome(findings=dict(Counter(kind.value for kind in kinds)))


async def _revoked_or_used(session: AsyncSession, reference: str) -> bool:
    """An earlier run revoked this supplier order's bundles, or found them used."""
    finding = (
        select(ReconciliationFinding.id)
        .where(
            ReconciliationFinding.subject == reference,
            ReconciliationFinding.kind.in_(
                (FindingKind.SUPPLIER_ORDER_REVOKED, FindingKind.SUPPLIER_BUNDLE_USED)
            ),
        )
        .exists()
    )
    return bool(await session.scalar(select(finding))) or await _revoke_audited(session, reference)


async def _revoke_audited(session: AsyncSession, reference: str) -> bool:
    return bool(
        await session.scalar(
            select(func.count())
            .select_from(AuditLog)
            .where(
                AuditLog.target_type == "supplier_order",
                AuditLog.target_id == reference,
                AuditLog.action == "reconciliation.supplier_order.revoke",
            )
        )
    )


async def _order_payment(
    session: AsyncSession, intent_id: str | None, *, lock: bool = False
) -> Payment | None:
    if intent_id is None:
        return None
    query = select(Payment).where(
        Payment.provider_payment_id == intent_id, Payment.purpose == PaymentPurpose.ORDER
    )
    return await session.scalar(query.with_for_update() if lock else query)


def _supplier_detail(supplier: UnclaimedSupplierOrder) -> dict[str, Any]:
    detail = {
        "bundle": supplier.bundle_name,
        "quantity": supplier.quantity,
        "supplier_created_at": supplier.created_at.isoformat() if supplier.created_at else None,
    }
    if supplier.lines:
        detail["lines"] = [{"bundle": name, "quantity": quantity} for name, quantity in supplier.lines]
    return detail


def _is_call_of(placed: SupplierOrder, rows: list[Order], held: set[str]) -> bool:
    """`rows` (by line) are the call that placed `placed`: lines 0..n-1, each asking for its line."""
    return [r.supplier_order_line for r in rows] == list(range(len(rows))) and is_purchase_of(
        placed, [purchase_of(r) for r in rows], held=held
    )


def _money_snapshot(order: Order, payment: Payment) -> dict[str, Any]:
    return {
        "order_status": order.status.value,
        "order_refunded_minor": order.refunded_minor,
        "payment_status": payment.status.value,
        "payment_refunded_minor": payment.refunded_minor,
    }
