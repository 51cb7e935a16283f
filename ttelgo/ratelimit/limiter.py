"""Who may make how many requests: named policies over `limits`' fixed windows, answered as the IETF
RateLimit headers (draft-ietf-httpapi-ratelimit-headers-10)."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import limits
from limits.aio.storage import Storage
from limits.aio.strategies import FixedWindowRateLimiter
from limits.errors import ConfigurationError as LimitsConfigurationError
from limits.storage import storage_from_string

from ttelgo.ratelimit.storage import PostgresStorage
from ttelgo.settings import ConfigurationError, Settings

log = logging.getLogger(__name__)
PAUSE_AFTER_FAILURE_S = 5.0
"""A store that failed is not asked again for this long: requests pass unlimited meanwhile (fail open),
so a database outage costs one failed hit every few seconds, not one per request."""


@dataclass(frozen=True)
class Policy:
    name: str  # "vendor", "user", "anonymous", "auth": the RateLimit headers' policy item
    item: limits.RateLimitItem

    @property
    def window_s(self) -> int:
        return self.item.get_expiry()

    @property
    def header(self) -> str:
        return f'"{self.name}";q={self.item.amount};w={self.window_s}'


@dataclass(frozen=True)
class Verdict:
    policy: Policy
    allowed: bool
    remaining: int
    reset_after_s: int

    def headers(self) -> dict[str, str]:
        headers = {
            "RateLimit-Policy": self.policy.header,
            "RateLimit": f'"{self.policy.name}";r={self.remaining};t={self.reset_after_s}',
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.reset_after_s)
        return headers


def _parse(setting: str, value: str) -> limits.RateLimitItem:
    try:
        return limits.parse(value)
    except ValueError as exc:
        raise ConfigurationError(f"{setting}={value!r} is not a rate limit like '300/minute'") from exc


@dataclass(frozen=True)
class Policies:
    vendor: Policy
    user: Policy
    anonymous: Policy
    auth: Policy

    @classmethod
    def from_settings(cls, settings: Settings) -> Policies:
        return cls(
            vendor=Policy("vendor", _parse("RATE_LIMIT_VENDOR", settings.rate_limit_vendor)),
            user=Policy("user", _parse("RATE_LIMIT_USER", settings.rate_limit_user)),
            anonymous=Policy("anonymous", _parse("RATE_LIMIT_ANONYMOUS", settings.rate_limit_anonymous)),
            auth=Policy("auth", _parse("RATE_LIMIT_AUTH", settings.rate_limit_auth)),
        )

    def for_vendor(self, per_minute: int | None) -> Policy:
        """The vendor default, or the vendor's own limit an admin set (requests per minute)."""
        return (
            self.vendor if per_minute is None else Policy("vendor", limits.RateLimitItemPerMinute(per_minute))
        )


class RateLimiter:
    def __init__(self, storage: Storage, policies: Policies) -> None:
        self.storage = storage
        self.policies = policies
        self._strategy = FixedWindowRateLimiter(storage)
        self._paused_until = 0.0

    async def hit(self, policy: Policy, identity: str) -> Verdict | None:
        """Counts one request of `identity` under `policy`; None when the store cannot be reached."""
        if time.monotonic() < self._paused_until:
            return None
        try:
            allowed, remaining, resets_at = await self._count(policy, identity)
        except Exception as exc:  # any store failure: serve the request unlimited rather than fail it
            self._paused_until = time.monotonic() + PAUSE_AFTER_FAILURE_S
            log.warning("rate limits paused: their store failed: %s: %s", type(exc).__name__, str(exc)[:200])
            return None
        return Verdict(policy, allowed, remaining, reset_after_s=max(1, math.ceil(resets_at - time.time())))

    async def _count(self, policy: Policy, identity: str) -> tuple[bool, int, float]:
        """Whether this hit is allowed, what remains, and when the window ends (epoch seconds)."""
        amount = policy.item.amount
        if isinstance(self.storage, PostgresStorage):  # one round trip: the count and its window's end
            hits, resets_at = await self.storage.hit(
                policy.item.key_for(policy.name, identity), policy.window_s
            )
            return hits <= amount, max(0, amount - hits), resets_at
        allowed = await self._strategy.hit(policy.item, policy.name, identity)
        stats = await self._strategy.get_window_stats(policy.item, policy.name, identity)
        return allowed, stats.remaining, stats.reset_time

    async def close(self) -> None:
        if isinstance(self.storage, PostgresStorage):
            await self.storage.close()


def build_rate_limiter(settings: Settings) -> RateLimiter | None:
    """The limiter RATE_LIMIT_* describe, or None when RATE_LIMIT_ENABLED is off."""
    if not settings.rate_limit_enabled:
        return None
    policies = Policies.from_settings(settings)
    uri = settings.rate_limit_storage_uri
    if not uri:
        assert settings.database_url
        return RateLimiter(PostgresStorage(settings.database_url), policies)
    if uri.startswith("memory:") and settings.is_production:
        raise ConfigurationError(
            "RATE_LIMIT_STORAGE_URI=memory:// counts per process; production needs a shared store "
            "(unset it for the database, or use redis://…)"
        )
    try:
        storage = storage_from_string(uri if uri.startswith("async+") else f"async+{uri}")
    except LimitsConfigurationError as exc:
        raise ConfigurationError(f"RATE_LIMIT_STORAGE_URI: {exc}") from exc
    assert isinstance(storage, Storage)
    return RateLimiter(storage, policies)
