"""`ttelgo orders check`: a delivered order with an eSIM missing is reported, and the exit code says so."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.orm import make_transient
from typer.testing import CliRunner

from tests.b2b.conftest import B2B
from ttelgo import cli
from ttelgo.models import Esim


async def _check() -> tuple[int, str]:
    # In a thread: the command runs its own event loop.
    result = await asyncio.to_thread(CliRunner().invoke, cli.app, ["orders", "check"])
    return result.exit_code, result.output


async def test_orders_check_reports_a_completed_order_without_its_esim(
    b2b: B2B, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "_database_url", lambda: b2b.settings.database_url)
    vendor = await b2b.new_vendor(balance=10_000)
    order = (await b2b.order(vendor, quantity=2)).json()
    assert order["status"] == "COMPLETED"
    assert await _check() == (0, "orders OK\n")

    async with b2b.sessions() as session, session.begin():
        esim = await session.scalar(select(Esim).where(Esim.order_id == uuid.UUID(order["id"])).limit(1))
        assert esim is not None
        await session.delete(esim)
    code, output = await _check()

    assert code == 1
    unwrapped = " ".join(output.split())  # the console wraps long lines
    assert f"order {order['id']} (COMPLETED): eSIMs delivered broken (2 vs 1)" in unwrapped
    assert "1 order violation(s)" in unwrapped
    async with b2b.sessions() as session, session.begin():  # put it back for the teardown's invariants
        make_transient(esim)
        session.add(esim)
