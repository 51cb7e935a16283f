"""Stateful domain of the simulator: organisation balance, orders, inventory, eSIMs and bundle assignments.

Everything runs on the server's single event loop and no method awaits, so each call is atomic.
"""

import copy
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, NamedTuple

from .catalogue import CENT, Bundle, Catalogue
from .errors import ApiError
from .identifiers import IdentifierFactory

if TYPE_CHECKING:
    from .schemas import OrderRequest

REFUND_WINDOW = timedelta(days=60)
UTILISATION_THRESHOLDS: tuple[int, ...] = (1, 50, 80, 100)  # percent used
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class BundleState(StrEnum):
    PROCESSING = "processing"
    QUEUED = "queued"
    ACTIVE = "active"
    DEPLETED = "depleted"
    EXPIRED = "expired"
    REVOKED = "revoked"
    LAPSED = "lapsed"


FINISHED_STATES = frozenset({BundleState.EXPIRED, BundleState.REVOKED, BundleState.LAPSED})


class ProfileStatus(StrEnum):
    RELEASED = "Released"
    DOWNLOADED = "Downloaded"
    INSTALLED = "Installed"


class AlertType(StrEnum):
    FIRST_USE = "FirstUse"
    UTILISATION = "Utilisation"


@dataclass
class Assignment:
    id: str
    reference: str
    iccid: str
    bundle: Bundle
    order_reference: str
    price: Decimal
    assigned_at: datetime
    state: BundleState
    initial_bytes: int
    remaining_bytes: int
    used_bytes: int = 0
    start_time: datetime | None = None
    end_time: datetime | None = None
    thresholds_sent: set[int] = field(default_factory=set)

    @property
    def started(self) -> bool:
        return self.start_time is not None or self.used_bytes > 0


@dataclass
class ESim:
    iccid: str
    matching_id: str
    smdp_address: str
    pin: str
    puk: str
    order_reference: str
    created_at: datetime
    profile_status: ProfileStatus = ProfileStatus.RELEASED
    first_installed_at: datetime | None = None
    customer_ref: str = ""
    first_use_sent: bool = False
    assignments: list[Assignment] = field(default_factory=list)


class PricedLine(NamedTuple):
    bundle: Bundle
    quantity: int
    price_per_unit: Decimal
    allow_reassign: bool
    iccids: tuple[str, ...] | None

    @property
    def subtotal(self) -> Decimal:
        return self.price_per_unit * self.quantity


class PricedOrder(NamedTuple):
    lines: tuple[PricedLine, ...]
    total: Decimal
    assign: bool
    created_at: datetime


@dataclass
class OrderLine:
    priced: PricedLine
    esims: list[ESim] = field(default_factory=list)


@dataclass
class Order:
    reference: str
    created_at: datetime
    assign: bool
    total: Decimal
    lines: list[OrderLine]
    status: str = "processing"
    status_message: str = ""

    @property
    def bundle_count(self) -> int:
        return sum(line.priced.quantity for line in self.lines)


@dataclass
class InventoryItem:
    usage_id: int
    bundle: Bundle
    total: int
    remaining: int
    price: Decimal
    purchased_at: datetime


@dataclass
class Organisation:
    name: str
    balance: Decimal
    currency: str = "USD"


class UsageEvent(NamedTuple):
    alert_type: AlertType
    threshold: int | None
    iccid: str
    assignment: Assignment  # a snapshot taken when the event happened


class UsageResult(NamedTuple):
    consumed: int
    events: list[UsageEvent]


class RevokeOutcome(NamedTuple):
    assignment: Assignment
    refund: Decimal  # credited to the balance (0 if none)
    to_inventory: bool
    message: str


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class SimState:
    def __init__(
        self,
        catalogue: Catalogue,
        org_name: str,
        balance: Decimal,
        ids: IdentifierFactory,
        clock: Clock = utc_now,
    ) -> None:
        self.catalogue = catalogue
        self.org = Organisation(name=org_name, balance=balance.quantize(CENT))
        self.ids = ids
        self.clock = clock
        self.orders: dict[str, Order] = {}
        self.esims: dict[str, ESim] = {}
        self.inventory: dict[int, InventoryItem] = {}
        self._next_assignment_id = 215_000_000
        self._next_usage_id = 1

    # ----- organisation -----
    def set_balance(self, balance: Decimal) -> None:
        self.org.balance = balance.quantize(CENT)

    # ----- orders -----
    def price(self, request: "OrderRequest") -> PricedOrder:
        """Validate an order request and price it; raises ApiError exactly as a transaction would."""
        lines: list[PricedLine] = []
        for i, item in enumerate(request.order):
            bundle = self.catalogue.require(item.item)
            iccids: tuple[str, ...] | None = None
            if item.iccids is not None:
                if not request.assign:
                    raise ApiError(400, f"order[{i}]: iccids can only be specified when assign is true")
                if len(item.iccids) != item.quantity:
                    raise ApiError(400, f"order[{i}]: the number of iccids must equal quantity")
                if len(set(item.iccids)) != len(item.iccids):
                    raise ApiError(400, f"order[{i}]: duplicate iccids")
                for iccid in item.iccids:
                    self.esim(iccid)
                iccids = tuple(item.iccids)
            lines.append(PricedLine(bundle, item.quantity, bundle.price, item.allow_reassign, iccids))
        total = sum((line.subtotal for line in lines), Decimal("0.00"))
        if total > self.org.balance:
            raise ApiError(
                400,
                f"Insufficient balance: order total {total} {self.org.currency} exceeds "
                f"organisation balance {self.org.balance} {self.org.currency}",
            )
        return PricedOrder(tuple(lines), total, request.assign, self.clock())

    def place(self, priced: PricedOrder) -> Order:
        """Charge the balance and record the order; fulfilment is separate so it can run later."""
        if priced.total > self.org.balance:  # re-checked: the balance may have moved since pricing
            raise ApiError(400, "Insufficient balance")
        self.org.balance -= priced.total
        order = Order(
            reference=str(uuid.uuid4()),
            created_at=priced.created_at,
            assign=priced.assign,
            total=priced.total,
            lines=[OrderLine(line) for line in priced.lines],
        )
        n = _plural(order.bundle_count, "eSIM" if order.assign else "bundle")
        order.status_message = f"Order processing: {n} will be {'assigned' if order.assign else 'added'}"
        self.orders[order.reference] = order
        return order

    def fulfil(self, reference: str) -> Order:
        order = self.orders[reference]
        if order.status == "completed":
            return order
        now = self.clock()
        seq = 0
        for line in order.lines:
            p = line.priced
            if not order.assign:
                self._add_inventory(p.bundle, p.quantity, p.price_per_unit, now)
                continue
            if p.iccids:  # top-up: the bundle goes onto eSIMs the organisation already owns
                targets = [self.esims[i] for i in p.iccids]
            else:
                targets = [self._new_esim(order, now) for _ in range(p.quantity)]
            for esim in targets:
                ref = f"{order.reference}-{seq}"
                self._assign(esim, p.bundle, order.reference, ref, p.price_per_unit, now)
                seq += 1
                line.esims.append(esim)
        order.status = "completed"
        if order.assign:
            done = f"{_plural(order.bundle_count, 'eSIM')} assigned"
        else:
            done = f"{_plural(order.bundle_count, 'bundle')} added to inventory"
        order.status_message = f"Order completed: {done}"
        return order

    def get_order(self, reference: str) -> Order:
        order = self.orders.get(reference)
        if order is None:
            raise ApiError(400, f"Order {reference} not found")
        return order

    def list_orders(self) -> list[Order]:
        return sorted(self.orders.values(), key=lambda o: o.created_at, reverse=True)

    # ----- eSIMs and assignments -----
    def _new_esim(self, order: Order, now: datetime) -> ESim:
        esim = ESim(
            iccid=self.ids.iccid(),
            matching_id=self.ids.matching_id(),
            smdp_address=self.ids.smdp_address(),
            pin=self.ids.pin(),
            puk=self.ids.puk(),
            order_reference=order.reference,
            created_at=now,
        )
        self.esims[esim.iccid] = esim
        return esim

    def _assign(
        self, esim: ESim, bundle: Bundle, order_ref: str, reference: str, price: Decimal, now: datetime
    ) -> Assignment:
        assignment = Assignment(
            id=str(self._next_assignment_id),
            reference=reference,
            iccid=esim.iccid,
            bundle=bundle,
            order_reference=order_ref,
            price=price,
            assigned_at=now,
            state=BundleState.QUEUED,
            initial_bytes=bundle.data_bytes,
            remaining_bytes=bundle.data_bytes,
        )
        self._next_assignment_id += 1
        esim.assignments.append(assignment)
        return assignment

    def esim(self, iccid: str) -> ESim:
        if not iccid.isdigit() or not 18 <= len(iccid) <= 20:
            raise ApiError(400, f"Invalid ICCID {iccid}")
        esim = self.esims.get(iccid)
        if esim is None:
            raise ApiError(403, f"eSIM {iccid} is not accessible by this organisation")
        self._refresh(esim)
        return esim

    def _refresh(self, esim: ESim) -> None:
        now = self.clock()
        for a in esim.assignments:
            if a.state in (BundleState.ACTIVE, BundleState.DEPLETED) and a.end_time and now >= a.end_time:
                a.state = BundleState.EXPIRED

    def esims_for_references(self, references: Iterable[str]) -> list[ESim]:
        found: list[ESim] = []
        for ref in references:
            order = self.get_order(ref)
            for line in order.lines:
                found.extend(self.esim(e.iccid) for e in line.esims)
        return found

    def find_assignment(self, iccid: str, assignment_id: str) -> Assignment:
        for a in self.esim(iccid).assignments:
            if a.id == assignment_id:
                return a
        raise ApiError(400, f"Assignment {assignment_id} not found on eSIM {iccid}")

    # ----- revoke and refund -----
    def revoke(self, iccid: str, name: str, refund_to_balance: bool, execute: bool) -> RevokeOutcome:
        esim = self.esim(iccid)
        live = [a for a in esim.assignments if a.bundle.name == name and a.state not in FINISHED_STATES]
        if not live:
            raise ApiError(400, f"Bundle {name} is not applied to eSIM {iccid}")
        unused = [a for a in live if not a.started]
        # The live API revokes the oldest unused assignment, else the latest one.
        target = unused[0] if unused else live[-1]
        refundable = not target.started and self.clock() - target.assigned_at <= REFUND_WINDOW
        refund = target.price if refundable and refund_to_balance else Decimal("0.00")
        to_inventory = refundable and not refund_to_balance
        if not execute:
            if refund:
                msg = f"Bundle can be revoked and {refund} {self.org.currency} refunded to balance"
            elif to_inventory:
                msg = "Bundle can be revoked and refunded to inventory"
            else:
                msg = "Bundle can be revoked; it has been used so it cannot be refunded"
            return RevokeOutcome(target, refund, to_inventory, msg)
        target.state = BundleState.REVOKED
        if refund:
            self.org.balance += refund
            msg = "Successfully Revoked Bundle, bundle has been refunded to balance"
        elif to_inventory:
            self._add_inventory(target.bundle, 1, target.price, target.assigned_at)
            msg = "Successfully Revoked Bundle, bundle has been refunded to inventory"
        else:
            msg = "Successfully Revoked Bundle"
        return RevokeOutcome(target, refund, to_inventory, msg)

    # ----- inventory -----
    def _add_inventory(self, bundle: Bundle, quantity: int, price: Decimal, purchased_at: datetime) -> None:
        item = InventoryItem(self._next_usage_id, bundle, quantity, quantity, price, purchased_at)
        self.inventory[item.usage_id] = item
        self._next_usage_id += 1

    def refund_inventory(self, usage_id: int, quantity: int) -> Decimal:
        item = self.inventory.get(usage_id)
        if item is None:
            raise ApiError(400, f"usageId {usage_id} not found")
        if quantity > item.remaining:
            raise ApiError(400, f"quantity {quantity} exceeds the {item.remaining} remaining")
        if self.clock() - item.purchased_at > REFUND_WINDOW:
            raise ApiError(400, "Bundle was purchased outside the refund period")
        amount = item.price * quantity
        item.remaining -= quantity
        self.org.balance += amount
        return amount

    # ----- usage (driven from /_sim) -----
    def consume(self, iccid: str, nbytes: int) -> UsageResult:
        esim = self.esim(iccid)
        now = self.clock()
        events: list[UsageEvent] = []
        left = nbytes
        while left > 0:
            current = self._usable_assignment(esim)
            if current is None:
                break
            if esim.first_installed_at is None:
                esim.first_installed_at = now
            esim.profile_status = ProfileStatus.INSTALLED
            if current.start_time is None:
                current.start_time = now
                current.end_time = now + timedelta(days=current.bundle.duration_days)
                current.state = BundleState.ACTIVE
            # FirstUse reports the bundle as it stands after that first consumption, like the live service.
            first_use, esim.first_use_sent = not esim.first_use_sent, True
            take = left if current.bundle.unlimited else min(left, current.remaining_bytes)
            if not current.bundle.unlimited:
                current.remaining_bytes -= take
            current.used_bytes += take
            left -= take
            if first_use:
                events.append(UsageEvent(AlertType.FIRST_USE, None, iccid, copy.copy(current)))
            if current.bundle.unlimited:
                break
            for t in UTILISATION_THRESHOLDS:
                if t not in current.thresholds_sent and current.used_bytes * 100 >= t * current.initial_bytes:
                    current.thresholds_sent.add(t)
                    events.append(UsageEvent(AlertType.UTILISATION, t, iccid, copy.copy(current)))
            if current.remaining_bytes == 0:
                current.state = BundleState.DEPLETED
        if left == nbytes:
            raise ApiError(409, f"eSIM {iccid} has no bundle that can carry data")
        return UsageResult(nbytes - left, events)

    @staticmethod
    def _usable_assignment(esim: ESim) -> Assignment | None:
        for a in esim.assignments:
            if a.state is BundleState.ACTIVE and (a.bundle.unlimited or a.remaining_bytes > 0):
                return a
        for a in esim.assignments:  # oldest queued bundle starts next, as on the network
            if a.state in (BundleState.QUEUED, BundleState.PROCESSING):
                return a
        return None
