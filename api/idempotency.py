"""The Idempotency-Key layer for every creating POST, scoped to the caller.

Same key + same request → the stored response, byte for byte. Same key + another request → 422.
Same key while the first is still running → 409. No key → 400. Records live 24 h. A record left
IN_PROGRESS by a crashed process is taken over after a short lease, so a retry is never stuck; the
handler's effects must themselves be keyed (deterministic transfer ids, workflow ids) for that case.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from fastapi import Request, Response
from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.problems import problem
from ttelgo.errors import AppError
from ttelgo.models import IdempotencyRecord, IdempotencyState

HEADER = "Idempotency-Key"
RETENTION = timedelta(hours=24)
IN_PROGRESS_LEASE = timedelta(seconds=60)
_STORED_HEADERS = ("content-type", "location")
log = logging.getLogger(__name__)


def _fingerprint(request: Request, body: bytes) -> str:
    """JSON bodies are compared by content, so key order and whitespace do not matter."""
    try:
        canonical = (
            json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode() if body else b""
        )
    except ValueError:
        canonical = body
    material = b"\n".join(
        [request.method.encode(), request.url.path.encode(), request.url.query.encode(), canonical]
    )
    return hashlib.sha256(material).hexdigest()


def idempotency_key(request: Request) -> str:
    key = request.headers.get(HEADER, "").strip()
    if not key:
        raise AppError(
            "IDEMPOTENCY_KEY_MISSING", f"send an {HEADER} header (e.g. a UUID) with every creating POST"
        )
    if len(key) > 255:
        raise AppError("BAD_REQUEST", f"{HEADER} is longer than 255 characters")
    return key


async def idempotent(request: Request, scope: str, handler: Callable[[], Awaitable[Response]]) -> Response:
    key = idempotency_key(request)
    fingerprint = _fingerprint(request, await request.body())
    sessions = request.app.state.sessions
    now = datetime.now(UTC)
    async with sessions() as session, session.begin():
        await session.execute(
            delete(IdempotencyRecord).where(
                IdempotencyRecord.scope == scope,
                IdempotencyRecord.key == key,
                IdempotencyRecord.expires_at < now,
            )
        )
        claimed = await session.scalar(
            insert(IdempotencyRecord)
            .values(
                scope=scope,
                key=key,
                method=request.method,
                path=request.url.path[:2048],
                request_hash=fingerprint,
                expires_at=func.now() + RETENTION,  # the database clock, like created_at
            )
            .on_conflict_do_nothing(index_elements=["scope", "key"])
            .returning(IdempotencyRecord.id)
        )
        if claimed is None:
            record = await session.scalar(
                select(IdempotencyRecord).where(
                    IdempotencyRecord.scope == scope, IdempotencyRecord.key == key
                )
            )
            assert record is not None
            if record.request_hash != fingerprint:
                raise AppError("IDEMPOTENCY_KEY_REUSED", f"this {HEADER} was used with a different request")
            if record.state is IdempotencyState.COMPLETED:
                return _replay(record)
            claimed = await session.scalar(  # take over an abandoned attempt, else it is still running
                update(IdempotencyRecord)
                .where(
                    IdempotencyRecord.id == record.id, IdempotencyRecord.updated_at < now - IN_PROGRESS_LEASE
                )
                .values(updated_at=now)
                .returning(IdempotencyRecord.id)
            )
            if claimed is None:
                raise AppError(
                    "IDEMPOTENCY_REQUEST_IN_PROGRESS",
                    f"a request with this {HEADER} is still being processed; retry shortly",
                    headers={"Retry-After": "1"},
                )

    try:
        response = await handler()
    except AppError as exc:
        if exc.spec.status >= 500 or exc.spec.status == 429:  # not this request's answer: free the key
            await _release(sessions, claimed)
            raise
        # A business answer (402, 404, …) is the result of this request: replay it too.
        response = problem(request, exc.spec, exc.detail, extra=exc.extra, headers=exc.headers)
    except BaseException:
        await _release(sessions, claimed)
        raise
    async with sessions() as session, session.begin():
        await session.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.id == claimed)
            .values(
                state=IdempotencyState.COMPLETED,
                response_status=response.status_code,
                response_headers={k: v for k, v in response.headers.items() if k.lower() in _STORED_HEADERS},
                response_body=bytes(response.body),
            )
        )
    return response


async def _release(sessions: async_sessionmaker[AsyncSession], record_id: uuid.UUID) -> None:
    """Frees the key after a failure (5xx, an outage, a bug), so the client's retry runs again. If the
    database is what failed, the record stays IN_PROGRESS and is taken over after IN_PROGRESS_LEASE; the
    original error is what the client is told about (a 503 asking for a retry with the same key)."""
    try:
        async with sessions() as session, session.begin():
            await session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.id == record_id))
    except Exception:
        log.warning("could not free idempotency record %s; it frees itself after its lease", record_id)


def _replay(record: IdempotencyRecord) -> Response:
    headers = {**(record.response_headers or {}), "Idempotent-Replayed": "true"}
    return Response(
        content=record.response_body or b"", status_code=record.response_status or 200, headers=headers
    )
