"""The migrations are the schema: models match them, they reverse cleanly, and constraints hold."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from ttelgo import migrate
from ttelgo.models import Base

SEED_TABLES = {
    "users",
    "vendors",
    "vendor_users",
    "vendor_ledger_entries",
    "orders",
    "payments",
    "esims",
    "idempotency_records",
    "webhook_events",
    "webhook_deliveries",
    "api_keys",
    "api_usage_logs",
    "audit_logs",
    "notifications",
    "system_config",
}


async def _diff(conn: AsyncConnection) -> list[object]:
    def compare(sync_conn: object) -> list[object]:
        context = MigrationContext.configure(
            sync_conn,
            opts={"compare_type": True, "compare_server_default": True},  # type: ignore[arg-type]
        )
        return list(compare_metadata(context, Base.metadata))

    return await conn.run_sync(compare)


async def test_models_match_migrations(database_url: str) -> None:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            assert await _diff(conn) == []
            tables = set(
                await conn.scalars(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
            )
    finally:
        await engine.dispose()
    assert SEED_TABLES | {"accounts", "transfers", "alembic_version"} <= tables


async def test_downgrade_to_base_then_upgrade_to_head(database_url: str) -> None:
    await asyncio.to_thread(migrate.downgrade, database_url, "base")
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            left = set(
                await conn.scalars(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
            )
        assert left <= {"alembic_version"}
        await asyncio.to_thread(migrate.upgrade, database_url, "head")
        async with engine.connect() as conn:
            assert await _diff(conn) == []
    finally:
        await engine.dispose()


@pytest.fixture
async def conn(database_url: str):  # type: ignore[no-untyped-def]
    engine = create_async_engine(database_url)
    async with engine.connect() as connection:
        yield connection
    await engine.dispose()


async def _violates(conn: AsyncConnection, sql: str, **params: object) -> bool:
    """True when the statement is refused by a constraint (the transaction is rolled back either way)."""
    try:
        async with conn.begin_nested():
            await conn.execute(text(sql), params)
    except IntegrityError:
        return True
    return False


async def test_idempotency_key_is_unique_per_caller_scope(conn: AsyncConnection) -> None:
    insert = (
        "INSERT INTO idempotency_records (id, scope, key, method, path, request_hash, state, expires_at) "
        "VALUES (:id, :scope, :key, 'POST', '/x', 'h', 'IN_PROGRESS', now() + interval '1 day')"
    )
    async with conn.begin():
        assert not await _violates(conn, insert, id=uuid.uuid4(), scope="vendor:a", key="k1")
        assert not await _violates(conn, insert, id=uuid.uuid4(), scope="vendor:b", key="k1")
        assert await _violates(conn, insert, id=uuid.uuid4(), scope="vendor:a", key="k1")


async def test_webhook_event_is_recorded_once_per_provider(conn: AsyncConnection) -> None:
    insert = (
        "INSERT INTO webhook_events (id, provider, event_id, event_type, payload, status) "
        "VALUES (:id, :provider, 'evt_1', 'payment_intent.succeeded', '{}', 'RECEIVED')"
    )
    async with conn.begin():
        assert not await _violates(conn, insert, id=uuid.uuid4(), provider="stripe")
        assert not await _violates(conn, insert, id=uuid.uuid4(), provider="esimgo")
        assert await _violates(conn, insert, id=uuid.uuid4(), provider="stripe")


async def test_transfers_unique_positive_and_resolved_once(conn: AsyncConnection) -> None:
    accounts = {uuid.uuid4(): "REVENUE", uuid.uuid4(): "ADJUSTMENTS"}
    transfer = (
        "INSERT INTO transfers (id, kind, debit_account_id, credit_account_id, amount_minor, currency, "
        "pending_id, code) VALUES (:id, :kind, :dr, :cr, :amount, :currency, :pending, 'test')"
    )
    async with conn.begin():
        insert_account = "INSERT INTO accounts (id, kind, currency) VALUES (:id, :kind, 'USD')"
        for account, kind in accounts.items():
            assert not await _violates(conn, insert_account, id=account, kind=kind)
        # Platform accounts are unique per kind and currency even though their vendor is NULL.
        assert await _violates(conn, insert_account, id=uuid.uuid4(), kind="REVENUE")
        debit, credit = accounts
        row = dict(dr=debit, cr=credit, currency="USD", pending=None)
        assert not await _violates(conn, transfer, id="t1", kind="PENDING", amount=500, **row)
        assert await _violates(conn, transfer, id="t1", kind="SINGLE", amount=500, **row)  # same id
        assert await _violates(conn, transfer, id="t2", kind="SINGLE", amount=0, **row)  # not positive
        assert await _violates(conn, transfer, id="t3", kind="SINGLE", amount=-5, **row)
        assert await _violates(conn, transfer, id="t4", kind="SINGLE", amount=5, **{**row, "currency": "usd"})
        resolve = {**row, "pending": "t1"}
        assert not await _violates(conn, transfer, id="t1-post", kind="POST_PENDING", amount=500, **resolve)
        assert await _violates(conn, transfer, id="t1-void", kind="VOID_PENDING", amount=500, **resolve)
