"""A `limits` storage in our own PostgreSQL, so the API's rate limits hold across processes with nothing
more to run: fixed windows in the UNLOGGED `rate_limit_counters` table, counted by an UPSERT.

Hits are group-committed: while one UPSERT is in flight, the hits that arrive meanwhile wait and go
together in the next one (one row per key, its hits summed). Every hit is still counted in the shared
table before it is answered, so the limit holds across processes exactly as before; under load a process
pays one round trip per batch instead of one per request.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import asyncpg
from limits.aio.storage import Storage
from sqlalchemy.engine import make_url

# A counter whose window has ended starts again at these hits; otherwise they are added. Both read the
# database clock, so API processes with skewed clocks share one window. Keys are sorted so that two
# processes' batches lock their rows in the same order (no deadlock).
_HIT = """
INSERT INTO rate_limit_counters AS c (key, hits, expires_at)
SELECT k, n, clock_timestamp() + make_interval(secs => s)
FROM unnest($1::text[], $2::int[], $3::float8[]) AS t(k, n, s) ORDER BY k
ON CONFLICT (key) DO UPDATE SET
    hits = CASE WHEN c.expires_at <= clock_timestamp() THEN excluded.hits ELSE c.hits + excluded.hits END,
    expires_at = CASE WHEN c.expires_at <= clock_timestamp() THEN excluded.expires_at ELSE c.expires_at END
RETURNING key, hits, extract(epoch FROM expires_at)::float8
"""
_LIVE = "SELECT hits, extract(epoch FROM expires_at)::float8 FROM rate_limit_counters WHERE key = $1 AND expires_at > clock_timestamp()"


def asyncpg_dsn(database_url: str) -> str:
    """asyncpg wants a plain `postgresql://` URL, without SQLAlchemy's `+driver`."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


@dataclass
class _Waiting:
    """The hits on one key waiting for the next batch, each with the future that answers it."""

    expiry: int
    hits: list[tuple[int, asyncio.Future[tuple[int, float]]]] = field(default_factory=list)


class PostgresStorage(Storage):
    """Fixed-window counters only (what `limits`' FixedWindowRateLimiter needs), on a small asyncpg pool of
    its own: plain asyncpg costs less per statement than going through SQLAlchemy's pool."""

    STORAGE_SCHEME = None  # built from the app's DATABASE_URL, never from a storage URI

    def __init__(self, database_url: str, *, max_connections: int = 10) -> None:
        super().__init__()
        self._dsn = asyncpg_dsn(database_url)
        self._max_connections = max_connections
        self._pool: asyncpg.Pool | None = None
        self._waiting: dict[str, _Waiting] = {}
        self._flusher: asyncio.Task[None] | None = None

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
        """Adds `amount` to the key's window and returns (hits in it up to and including this one, when it
        ends as epoch seconds), as if the hits of a batch had been counted one after another."""
        answer: asyncio.Future[tuple[int, float]] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, _Waiting(expiry)).hits.append((amount, answer))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await answer

    async def _flush(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, {}
            try:
                counted = await self._count(batch)
            except BaseException as exc:  # every hit of the batch fails with it (the limiter fails open)
                for waiting in batch.values():
                    for _, answer in waiting.hits:
                        if not answer.done():
                            answer.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            for key, waiting in batch.items():
                total, resets_at = counted[key]
                after = sum(amount for amount, _ in waiting.hits)
                for amount, answer in waiting.hits:
                    after -= amount  # the hits counted after this one in the same batch
                    if not answer.done():
                        answer.set_result((total - after, resets_at))

    async def _count(self, batch: dict[str, _Waiting]) -> dict[str, tuple[int, float]]:
        """One UPSERT for the whole batch: each key's summed hits -> (its total, its window's end)."""
        keys = list(batch)
        rows = await (await self._connections()).fetch(
            _HIT,
            keys,
            [sum(amount for amount, _ in batch[key].hits) for key in keys],
            [float(batch[key].expiry) for key in keys],
        )
        return {row[0]: (int(row[1]), float(row[2])) for row in rows}

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
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        if self._pool is not None:
            await self._pool.close()
