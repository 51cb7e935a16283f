"""Vendor API keys: `ttg_<prefix>_<secret>`, shown once, stored as a SHA-256 hash beside the visible prefix.

Keys carry 256 bits of randomness, so a fast hash is safe (see `opaque`) and keeps per-request
verification cheap; the unique prefix finds the row without scanning.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ttelgo.auth.opaque import digest
from ttelgo.models import ApiKey

KEY_MARKER = "ttg_"
PREFIX_LENGTH = len(KEY_MARKER) + 12


@dataclass(frozen=True)
class NewApiKey:
    plaintext: str
    prefix: str
    key_hash: str


def generate() -> NewApiKey:
    prefix = KEY_MARKER + secrets.token_hex(6)
    plaintext = f"{prefix}_{secrets.token_urlsafe(32)}"
    return NewApiKey(plaintext=plaintext, prefix=prefix, key_hash=digest(plaintext))


def prefix_of(plaintext: str) -> str | None:
    """The lookup prefix of a presented key, or None when it cannot be one of ours."""
    looks_right = plaintext.startswith(KEY_MARKER) and plaintext[PREFIX_LENGTH : PREFIX_LENGTH + 1] == "_"
    return plaintext[:PREFIX_LENGTH] if looks_right and len(plaintext) > PREFIX_LENGTH + 1 else None


def matches(plaintext: str, key_hash: str) -> bool:
    return hmac.compare_digest(digest(plaintext), key_hash)


async def live_key(session: AsyncSession, plaintext: str) -> ApiKey | None:
    """The unrevoked key `plaintext` is, if any (its vendor's standing is for the caller to judge)."""
    prefix = prefix_of(plaintext)
    key = await session.scalar(select(ApiKey).where(ApiKey.prefix == prefix)) if prefix else None
    if key is None or key.revoked_at is not None or not matches(plaintext, key.key_hash):
        return None
    return key
