"""Housekeeping: one bounded batch of one chore per call (see `ttelgo.housekeeping`)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.contracts import PRUNE, PruneBatch, Pruned
from ttelgo import housekeeping


class HousekeepingActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    @activity.defn(name=PRUNE)
    async def prune(self, batch: PruneBatch) -> Pruned:
        """A retry deletes whatever of the batch is still there, which is safe."""
        async with self.sessions() as session, session.begin():
            rows = await housekeeping.prune(session, batch.chore, batch.cutoff, batch.limit)
        return Pruned(chore=batch.chore, rows=rows)
