"""The PostgreSQL rate-limit store group-commits concurrent hits (issue 16): fewer round trips under load,
and every hit still counted once in the shared table, so two processes together allow exactly the limit."""

from __future__ import annotations

import asyncio

import pytest

from ttelgo.ratelimit.storage import PostgresStorage


async def test_concurrent_hits_share_round_trips_and_are_each_counted_once(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    statements = 0
    real = PostgresStorage._count

    async def counting(self: PostgresStorage, batch: dict) -> dict:  # type: ignore[type-arg]
        nonlocal statements
        statements += 1
        return await real(self, batch)

    monkeypatch.setattr(PostgresStorage, "_count", counting)
    one, other = PostgresStorage(database_url), PostgresStorage(database_url)
    try:
        hits = [one.hit("anonymous/203.0.113.7", 60) for _ in range(60)]
        hits += [other.hit("anonymous/203.0.113.7", 60) for _ in range(60)]
        hits += [one.hit(f"anonymous/198.51.100.{i}", 60) for i in range(10)]
        answers = await asyncio.gather(*hits)
        shared = sorted(count for count, _ in answers[:120])
        # As if counted one after another across both processes: each hit saw a different count.
        assert shared == list(range(1, 121))
        assert [count for count, _ in answers[120:]] == [1] * 10
        assert len({resets_at for _, resets_at in answers[:120]}) == 1
        assert await one.get("anonymous/203.0.113.7") == 120
        assert statements < 130 // 4, statements
        # Alone, a hit is counted at once.
        assert (await one.hit("anonymous/203.0.113.7", 60))[0] == 121
    finally:
        await one.close()
        await other.close()


async def test_a_failing_store_fails_every_hit_of_the_batch() -> None:
    unreachable = PostgresStorage("postgresql://nobody@127.0.0.1:1/none")
    try:
        answers = await asyncio.gather(*(unreachable.hit("k", 60) for _ in range(5)), return_exceptions=True)
        assert all(isinstance(answer, OSError) for answer in answers), answers
    finally:
        await unreachable.close()
