"""Statements: a period's opening and closing posted balances, totals by entry type, date filters, the CSV
export, and the admins' view of any vendor's statement (`api/statements.py`)."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select, update

import api.statements
from tests.b2b.conftest import B2B, VendorHandle
from ttelgo.models import LedgerEntryType, VendorLedgerEntry

LEDGER = "/api/v1/vendor/ledger"


def _admin_ledger(vendor_id: str) -> str:
    return f"/api/v1/admin/vendors/{vendor_id}/ledger"


async def _statement(b2b: B2B, vendor: VendorHandle, **params: Any) -> dict[str, Any]:
    response = await b2b.api.get(LEDGER, params={"page_size": 100, **params}, headers=vendor.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def _wait_for(b2b: B2B, vendor: VendorHandle, ready: Any) -> dict[str, int]:
    for _ in range(150):
        wallet = await b2b.wallet(vendor)
        if ready(wallet):
            return wallet
        await asyncio.sleep(0.1)
    raise AssertionError(f"wallet never got there: {wallet}")


def _assert_adds_up(statement: dict[str, Any]) -> None:
    items = statement["items"]
    assert statement["total"] == len(items)
    assert (
        statement["opening_balance_minor"] + sum(e["posted_minor"] for e in items)
        == (statement["closing_balance_minor"])
    )
    totals = {t["entry_type"]: t for t in statement["totals"]}
    assert set(totals) == set(LedgerEntryType)
    for entry_type, total in totals.items():
        mine = [e for e in items if e["entry_type"] == entry_type]
        assert total["count"] == len(mine), entry_type
        assert total["amount_minor"] == sum(e["amount_minor"] for e in mine), entry_type
        assert total["posted_minor"] == sum(e["posted_minor"] for e in mine), entry_type
    assert sum(t["posted_minor"] for t in totals.values()) == (
        statement["closing_balance_minor"] - statement["opening_balance_minor"]
    )


async def test_closing_balance_equals_the_wallet_and_everything_adds_up(b2b: B2B) -> None:
    vendor = await b2b.new_vendor(balance=10_000)
    await b2b.adjust(vendor.id, -1_234)
    done = (await b2b.order(vendor)).json()
    assert done["status"] == "COMPLETED"
    b2b.sim.faults(**{"POST /orders": {"no_bundles_left": True}})
    assert (await b2b.order(vendor)).json()["status"] == "FAILED"
    b2b.sim.faults(**{"POST /orders": {}})
    before_refund = (await b2b.wallet(vendor))["balance_minor"]
    refund = await b2b.api.post(
        f"/api/v1/vendor/orders/{done['id']}/refund",
        json={"reason": "the traveller cancelled"},
        headers={**vendor.headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert refund.status_code == 201, refund.text
    wallet = await _wait_for(b2b, vendor, lambda w: w["balance_minor"] > before_refund)

    statement = await _statement(b2b, vendor)
    today = datetime.now(UTC).date()
    assert statement["to"] == today.isoformat() and statement["currency"] == "USD"
    assert statement["balances"] == "POSTED"
    assert statement["opening_balance_minor"] == 0  # the vendor is new: nothing before the period
    assert statement["closing_balance_minor"] == wallet["balance_minor"] == 10_000 - 1_234
    assert statement["held_at_close_minor"] == wallet["held_minor"] == 0
    _assert_adds_up(statement)
    counts = {t["entry_type"]: t["count"] for t in statement["totals"]}
    assert counts == {
        "ADJUSTMENT": 2,
        "ORDER_HOLD": 2,
        "ORDER_DEBIT": 1,
        "HOLD_RELEASE": 1,
        "REFUND": 1,
        "TOPUP": 0,
    }
    holds = [e for e in statement["items"] if e["entry_type"] in ("ORDER_HOLD", "HOLD_RELEASE")]
    assert holds and all(e["posted_minor"] == 0 and e["amount_minor"] != 0 for e in holds)

    # Page 2 of 3-entry pages continues where page 1 stopped, with the period's figures unchanged.
    first = await _statement(b2b, vendor, page=1, page_size=3)
    second = await _statement(b2b, vendor, page=2, page_size=3)
    paged = [e["id"] for e in first["items"] + second["items"]]
    assert paged == [e["id"] for e in statement["items"][:6]]
    assert first["closing_balance_minor"] == statement["closing_balance_minor"] and first["total"] == 7

    # The admins read the same statement, the same way.
    as_admin = await b2b.api.get(_admin_ledger(vendor.id), params={"page_size": 100}, headers=b2b.admin)
    assert as_admin.status_code == 200 and as_admin.json() == statement


async def test_the_csv_holds_every_entry_of_the_period_and_matches_the_json(b2b: B2B) -> None:
    vendor = await b2b.new_vendor(balance=10_000)
    assert (await b2b.order(vendor)).json()["status"] == "COMPLETED"
    await b2b.adjust(vendor.id, -1)
    statement = await _statement(b2b, vendor)

    response = await b2b.api.get(LEDGER, params={"format": "csv", "page_size": 1}, headers=vendor.headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment;") and f"statement-{vendor.id}-" in disposition
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == statement["total"] == 4  # not paginated: page_size does not apply
    for row, entry in zip(rows, reversed(statement["items"]), strict=True):  # the CSV is oldest first
        assert int(row["entry_id"]) == entry["id"] and row["entry_type"] == entry["entry_type"]
        assert row["transfer_id"] == entry["transfer_id"] and row["currency"] == "USD"
        for name in ("amount", "posted", "balance_after", "available_after"):
            minor = entry[f"{name}_minor"]
            assert int(row[f"{name}_minor"]) == minor
            assert Decimal(row[name]) * 100 == minor and row[name] == f"{Decimal(minor) / 100:.2f}"
        assert datetime.fromisoformat(row["created_at"]) == datetime.fromisoformat(entry["created_at"])
    assert rows[-1]["amount"] == "-0.01"

    as_admin = await b2b.api.get(_admin_ledger(vendor.id), params={"format": "csv"}, headers=b2b.admin)
    assert as_admin.status_code == 200 and as_admin.text == response.text


async def test_a_csv_over_the_row_cap_is_refused(b2b: B2B, monkeypatch: pytest.MonkeyPatch) -> None:
    vendor = await b2b.new_vendor(balance=100)
    await b2b.adjust(vendor.id, 5)
    monkeypatch.setattr(api.statements, "MAX_CSV_ROWS", 1)
    response = await b2b.api.get(LEDGER, params={"format": "csv"}, headers=vendor.headers)
    assert response.status_code == 422 and "shorter period" in response.json()["detail"]
    monkeypatch.setattr(api.statements, "MAX_CSV_ROWS", 2)
    assert (await b2b.api.get(LEDGER, params={"format": "csv"}, headers=vendor.headers)).status_code == 200


async def test_held_money_is_shown_apart_from_the_posted_closing_balance(b2b: B2B) -> None:
    vendor = await b2b.new_vendor(balance=10_000)
    b2b.sim.faults(**{"POST /orders": {"latency_ms": 1500}})
    pending = await b2b.order(vendor, wait=0)
    assert pending.status_code == 202, pending.text
    wallet = await _wait_for(b2b, vendor, lambda w: w["held_minor"] > 0)
    statement = await _statement(b2b, vendor)
    assert statement["closing_balance_minor"] == wallet["balance_minor"] == 10_000  # the hold is not posted
    assert statement["held_at_close_minor"] == wallet["held_minor"]
    hold = statement["items"][0]
    assert hold["entry_type"] == "ORDER_HOLD" and hold["amount_minor"] == -wallet["held_minor"]
    _assert_adds_up(statement)

    wallet = await _wait_for(b2b, vendor, lambda w: w["held_minor"] == 0)
    statement = await _statement(b2b, vendor)
    assert statement["held_at_close_minor"] == 0
    assert statement["closing_balance_minor"] == wallet["balance_minor"] < 10_000
    _assert_adds_up(statement)


async def test_date_filters_include_and_exclude_at_the_edges_of_utc_days(b2b: B2B) -> None:
    vendor = await b2b.new_vendor()
    amounts = (1_000, 200, 30, 4)
    for amount in amounts:
        await b2b.adjust(vendor.id, amount)
    # Entries placed on either side of midnight (UTC) at the period's edges.
    stamps = (
        datetime(2024, 1, 31, 23, 59, 59, 999_999, UTC),
        datetime(2024, 2, 1, tzinfo=UTC),
        datetime(2024, 2, 29, 23, 59, 59, 999_999, UTC),
        datetime(2024, 3, 1, tzinfo=UTC),
    )
    async with b2b.sessions() as session, session.begin():
        ids = list(
            await session.scalars(
                select(VendorLedgerEntry.id)
                .where(VendorLedgerEntry.vendor_id == uuid.UUID(vendor.id))
                .order_by(VendorLedgerEntry.id)
            )
        )
        for entry_id, stamp in zip(ids, stamps, strict=True):
            await session.execute(
                update(VendorLedgerEntry).where(VendorLedgerEntry.id == entry_id).values(created_at=stamp)
            )

    async def period(first: str, last: str) -> tuple[int, list[int], int]:
        statement = await _statement(b2b, vendor, **{"from": first, "to": last})
        _assert_adds_up(statement)
        assert statement["period_start"].startswith(first) and statement["period_end"].startswith(
            (date.fromisoformat(last) + timedelta(days=1)).isoformat()
        )
        amounts_in = sorted(e["amount_minor"] for e in statement["items"])
        return statement["opening_balance_minor"], amounts_in, statement["closing_balance_minor"]

    assert await period("2024-02-01", "2024-02-29") == (1_000, [30, 200], 1_230)
    assert await period("2024-02-01", "2024-02-01") == (1_000, [200], 1_200)
    assert await period("2024-01-31", "2024-01-31") == (0, [1_000], 1_000)
    assert await period("2024-03-01", "2024-03-01") == (1_230, [4], 1_234)
    assert await period("2024-01-01", "2024-01-30") == (0, [], 0)
    assert await period("2024-03-02", "2024-03-31") == (1_234, [], 1_234)
    today = await _statement(b2b, vendor)  # the default period: recent days only
    assert today["total"] == 0
    assert today["opening_balance_minor"] == today["closing_balance_minor"] == 1_234
    assert (await b2b.wallet(vendor))["balance_minor"] == 1_234


@pytest.mark.parametrize(
    "params",
    [
        {"from": "2024-02-02", "to": "2024-02-01"},  # backwards
        {"from": "2023-01-01", "to": "2024-01-02"},  # 367 days
        {"to": (datetime.now(UTC).date() + timedelta(days=1)).isoformat()},  # the future
        {"from": "1999-12-31", "to": "2000-01-01"},  # before there was a ledger
        {"from": "0001-01-01"},
        {"to": "9999-12-31"},
        {"format": "xml"},
    ],
)
async def test_a_bad_period_is_422(b2b: B2B, params: dict[str, str]) -> None:
    vendor = await b2b.new_vendor()
    for path, headers in ((LEDGER, vendor.headers), (_admin_ledger(vendor.id), b2b.admin)):
        response = await b2b.api.get(path, params=params, headers=headers)
        assert response.status_code == 422, (path, response.text)
        assert response.json()["code"] == "VALIDATION_ERROR"


async def test_vendors_read_only_their_own_statement_and_admins_read_any(b2b: B2B) -> None:
    mine, theirs = await b2b.new_vendor(balance=500), await b2b.new_vendor(balance=700)
    for vendor, other in ((mine, theirs), (theirs, mine)):
        statement = await _statement(b2b, vendor)
        assert (
            statement["vendor_id"] == vendor.id
            and statement["closing_balance_minor"] == ((await b2b.wallet(vendor))["balance_minor"])
        )
        other_entries = {e["transfer_id"] for e in (await _statement(b2b, other))["items"]}
        assert other_entries and not other_entries & {e["transfer_id"] for e in statement["items"]}
        refused = await b2b.api.get(_admin_ledger(other.id), headers=vendor.headers)
        assert refused.status_code in (401, 403) and refused.json()["code"] in (
            "FORBIDDEN",
            "UNAUTHENTICATED",
        )
        as_admin = await b2b.api.get(_admin_ledger(other.id), headers=b2b.admin)
        assert (
            as_admin.status_code == 200
            and as_admin.json()["closing_balance_minor"] == ((await b2b.wallet(other))["balance_minor"])
        )
    unknown = await b2b.api.get(_admin_ledger(str(uuid.uuid4())), headers=b2b.admin)
    assert unknown.status_code == 404 and unknown.json()["code"] == "VENDOR_NOT_FOUND"
