"""Who is calling, read from the credentials alone, for the rate limits and the usage log.

These run before (and outside) the route's own authentication, on every request, so they must be cheap:
a token's signature is checked locally, and what an API key belongs to is read once and kept for
RATE_LIMIT_CACHE_SECONDS (a revoked key, a suspended vendor or a new vendor limit is seen within that
time; the route's own check sees them at once). Credentials that do not check out make an anonymous
caller; the route refuses them with its usual 401.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.datastructures import Headers
from starlette.types import Scope

from ttelgo.auth import api_keys
from ttelgo.auth.tokens import PrincipalKind, TokenError, verify
from ttelgo.models import Vendor

_SCOPE_KEY = "ttelgo.caller"
_MAX_ENTRIES = 10_000  # a flood of made-up keys empties the cache rather than growing it

T = TypeVar("T")


@dataclass(frozen=True)
class Caller:
    kind: str  # "vendor" (an API key or a vendor team member) or "user" (a customer or staff token)
    id: str  # whom the limit counts: the vendor, or the user
    vendor_id: uuid.UUID | None = None
    api_key_id: uuid.UUID | None = None
    vendor_rate_limit: int | None = None  # requests per minute an admin set for this vendor


class _TtlCache(Generic[T]):
    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[str, tuple[float, T]] = {}

    def get(self, key: str) -> tuple[bool, T | None]:
        entry = self._entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            return False, None
        return True, entry[1]

    def put(self, key: str, value: T) -> None:
        if len(self._entries) >= _MAX_ENTRIES:
            self._entries.clear()
        self._entries[key] = (time.monotonic() + self.ttl_s, value)

    def forget(self, key: str) -> None:
        self._entries.pop(key, None)


@dataclass(frozen=True)
class _KeyOwner:
    vendor_id: uuid.UUID
    api_key_id: uuid.UUID


class CallerDirectory:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], jwt_secret: str, ttl_s: float) -> None:
        self._sessions = sessions
        self._jwt_secret = jwt_secret
        self._keys: _TtlCache[_KeyOwner] = _TtlCache(ttl_s)
        self._vendor_limits: _TtlCache[int | None] = _TtlCache(ttl_s)

    async def identify(self, scope: Scope) -> Caller | None:
        """The request's caller (worked out once per request), or None for an anonymous one."""
        state = scope.setdefault("state", {})
        if _SCOPE_KEY not in state:
            state[_SCOPE_KEY] = await self._identify(Headers(scope=scope))
        return state[_SCOPE_KEY]

    async def _identify(self, headers: Headers) -> Caller | None:
        header_key = headers.get("x-api-key")
        scheme, _, bearer = headers.get("authorization", "").partition(" ")
        bearer = bearer.strip() if scheme.lower() == "bearer" else ""
        presented = header_key or bearer
        if not presented:
            return None
        if header_key or api_keys.prefix_of(presented):
            return await self._from_api_key(presented)
        try:
            claims = verify(presented, self._jwt_secret)
        except TokenError:
            return None
        if claims.kind is PrincipalKind.VENDOR_USER and claims.vendor_id:
            limit = await self._vendor_limit(claims.vendor_id)
            return Caller("vendor", str(claims.vendor_id), claims.vendor_id, vendor_rate_limit=limit)
        return Caller("user", str(claims.subject))

    async def _from_api_key(self, plaintext: str) -> Caller | None:
        # The cache is keyed by the key's hash: no plaintext key is kept in memory.
        digest = hashlib.sha256(plaintext.encode()).hexdigest()
        known, owner = self._keys.get(digest)
        if not known:
            try:
                owner = await self._read_key(plaintext)
            except Exception:  # the database is away: anonymous for now, and the route answers 503
                return None
            self._keys.put(digest, owner)
        if owner is None:
            return None
        limit = await self._vendor_limit(owner.vendor_id)
        return Caller("vendor", str(owner.vendor_id), owner.vendor_id, owner.api_key_id, limit)

    async def _read_key(self, plaintext: str) -> _KeyOwner | None:
        async with self._sessions() as session:
            key = await api_keys.live_key(session, plaintext)
        return _KeyOwner(key.vendor_id, key.id) if key else None

    async def _vendor_limit(self, vendor_id: uuid.UUID) -> int | None:
        known, limit = self._vendor_limits.get(str(vendor_id))
        if not known:
            try:
                async with self._sessions() as session:
                    limit = await session.scalar(
                        select(Vendor.rate_limit_per_minute).where(Vendor.id == vendor_id)
                    )
            except Exception:  # the database is away: the default limit, asked again next time
                return None
            self._vendor_limits.put(str(vendor_id), limit)
        return limit

    def forget_vendor(self, vendor_id: uuid.UUID) -> None:
        """After an admin changed the vendor's limit: this process sees it at once (others within the TTL)."""
        self._vendor_limits.forget(str(vendor_id))
