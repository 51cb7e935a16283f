"""Findings for an operator raised outside a reconciliation run (a refund that could not give a bundle
back, say). Each is recorded under a finished run of its own, `requested_by` "system:<source>", so it
shows in the admin reconciliation view with the runs' findings; recording it again changes nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from ttelgo.models import (
    FindingAction,
    FindingKind,
    ReconciliationFinding,
    ReconciliationRun,
    ReconciliationStatus,
)

_RUN_IDS = uuid.UUID("6f1b2a6e-0c55-4b8e-9b0a-3f7f3c1e9d21")  # namespace of these runs' ids


async def report(
    session: AsyncSession,
    source: str,
    kind: FindingKind,
    subject: str,
    *,
    order_id: uuid.UUID | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Adds the finding (and its run) to the caller's transaction, once per source, kind and subject."""
    key = f"{source}:{kind.value}:{subject}"
    run_id, now = uuid.uuid5(_RUN_IDS, key), datetime.now(UTC)
    await session.execute(
        insert(ReconciliationRun)
        .values(
            id=run_id,
            workflow_id=key[:200],
            requested_by=f"system:{source}"[:100],
            status=ReconciliationStatus.COMPLETED,
            window_start=now,
            window_end=now,
            summary={kind.value: 1},
            finished_at=now,
        )
        .on_conflict_do_nothing(index_elements=["id"])
    )
    await session.execute(
        insert(ReconciliationFinding)
        .values(
            run_id=run_id,
            kind=kind,
            action=FindingAction.REPORTED,
            subject=subject[:255],
            order_id=order_id,
            detail=detail or {},
        )
        .on_conflict_do_nothing(index_elements=["run_id", "kind", "subject"])
    )
