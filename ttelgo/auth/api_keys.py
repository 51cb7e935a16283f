"""Vendor API keys: `ttg_<prefix>_<secret>`, shown once, stored as a SHA-256 hash beside the visible prefix.

Keys carry 256 bits of randomness, so a fast hash is safe (unlike passwords) and keeps per-request
verification cheap; the unique prefix finds the row without scanning.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

KEY_MARKER = "ttg_"
PREFIX_LENGTH = len(KEY_MARKER) + 12


@dataclass(frozen=True)
class NewApiKey:
    plaintext: str
    prefix: str
    key_hash: str


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def generate() -> NewApiKey:
    prefix = KEY_MARKER + secrets.token_hex(6)
    plaintext = f"{prefix}_{secrets.token_urlsafe(32)}"
    return NewApiKey(plaintext=plaintext, prefix=prefix, key_hash=hash_key(plaintext))


def prefix_of(plaintext: str) -> str | None:
    """The lookup prefix of a presented key, or None when it cannot be one of ours."""
    looks_right = plaintext.startswith(KEY_MARKER) and plaintext[PREFIX_LENGTH : PREFIX_LENGTH + 1] == "_"
    return plaintext[:PREFIX_LENGTH] if looks_right and len(plaintext) > PREFIX_LENGTH + 1 else None


def matches(plaintext: str, key_hash: str) -> bool:
    return hmac.compare_digest(hash_key(plaintext), key_hash)
