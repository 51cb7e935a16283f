"""The async SQLAlchemy engine and session factory; one engine per process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

RECYCLE_S = 1800  # connections are replaced after half an hour, before idle-timeouts on the way can bite


def async_url(database_url: str) -> str:
    """Accept plain `postgresql://` URLs (as most tools print them) and use the asyncpg driver."""
    url = make_url(database_url)
    if url.drivername in ("postgresql", "postgres", "postgresql+psycopg2", "postgresql+psycopg"):
        url = url.set(drivername="postgresql+asyncpg")
    return url.render_as_string(hide_password=False)


def create_engine(database_url: str, *, pool_size: int = 10) -> AsyncEngine:
    # hide_parameters: a database error's message (and so its log line) never carries the row's values:
    # password hashes, e-mail addresses, key hashes, webhook secrets.
    # No pre-ping: on asyncpg it is three round trips (BEGIN, `;`, ROLLBACK) per checkout, a third of a
    # webhook's database time. A connection lost under us (PostgreSQL restarted) fails the statement in
    # flight, which SQLAlchemy recognises as a disconnect: it then discards every pooled connection older
    # than the failure, so the next requests reconnect (optimistic disconnect handling).
    return create_async_engine(
        async_url(database_url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=False,
        pool_recycle=RECYCLE_S,
        hide_parameters=True,
    )


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def autocommit(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection whose statements each commit on their own: a single-statement write is then one round
    trip instead of three (BEGIN, the statement, COMMIT)."""
    async with engine.connect() as connection:
        yield await connection.execution_options(isolation_level="AUTOCOMMIT")
