"""A `limits` storage in our own PostgreSQL, so the API's rate limits hold across processes with nothing
more to run: fixed windows in the UNLOGGED `rate_limit_counters` table, one UPSERT round trip per hit."""

from __future__ import annotations

import time

import asyncpg
from limits.aio.storage import Storage
from sqlalchemy.engine import make_url

# A counter whose window has ended starts again at this hit; otherwise the hit is added. Both read the
# database clock, so API processes with skewed clocks share one window.
_HIT = """
INSERT INTO rate_limit_counters AS c (key, hits, expires_at)
VALUES ($1, $3, clock_timestamp() + make_interval(secs => $2))
ON CONFLICT (key) DO UPDATE SET
    hits = CASE WHEN c.expires_at <= clock_timestamp() THEN excluded.hits ELSE c.hits + excluded.hits END,
    expires_at = CASE WHEN c.expires_at <= clock_timestamp() THEN excluded.expires_at ELSE c.expires_at END
RETURNING hits, extract(epoch FROM expires_at)::float8
"""
_LIVE = "SELECT hits, extract(epoch FROM expires_at)::float8 FROM rate_limit_counters WHERE key = $1 AND expires_at > clock_timestamp()"


def asyncpg_dsn(database_url: str) -> str:
    """asyncpg wants a plain `postgresql://` URL, without SQLAlchemy's `+driver`."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


class PostgresStorage(Storage):
    """Fixed-window counters only (what `limits`' FixedWindowRateLimiter needs), on a small pool of its
    own: the app's pool pings on every checkout, which would double the cost of a hit."""

    STORAGE_SCHEME = None  # built from the app's DATABASE_URL, never from a storage URI

    def __init__(self, database_url: str, *, max_connections: int = 10) -> None:
        super().__init__()
        self._dsn = asyncpg_dsn(database_url)
        self._max_connections = max_connections
        self._pool: asyncpg.Pool | None = None

    @property
    def base_exceptions(self) -> tuple[type[Exception], ...]:
        return (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)

    async def _connections(self) -> asyncpg.Pool:
        if self._pool is None:
            self._pool = await asyncpg.create_pool(
                self._dsn, min_size=0, max_size=self._max_connections, timeout=2, command_timeout=2
            )
        return self._pool

    async def hit(self, key: str, expiry: int, amount: int = 1) -> tuple[int, float]:
        """Adds `amount` to the key's window and returns (hits in it, when it ends as epoch seconds)."""
        pool = await self._connections()
        hits, resets_at = await pool.fetchrow(_HIT, key, float(expiry), amount)
        return int(hits), float(resets_at)

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        return (await self.hit(key, expiry, amount))[0]

    async def get(self, key: str) -> int:
        row = await (await self._connections()).fetchrow(_LIVE, key)
        return int(row[0]) if row else 0

    async def get_expiry(self, key: str) -> float:
        row = await (await self._connections()).fetchrow(_LIVE, key)
        return float(row[1]) if row else time.time()

    async def check(self) -> bool:
        try:
            await (await self._connections()).fetchval("SELECT 1")
        except Exception:
            return False
        return True

    async def reset(self) -> int | None:
        return int((await (await self._connections()).execute("DELETE FROM rate_limit_counters")).split()[-1])

    async def clear(self, key: str) -> None:
        await (await self._connections()).execute("DELETE FROM rate_limit_counters WHERE key = $1", key)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
