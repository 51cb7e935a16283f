"""Opaque bearer secrets (API keys, refresh tokens, password-reset tokens): 256 random bits, stored only as
their SHA-256.

With that much randomness a fast hash is safe (unlike passwords) and a presented secret finds its row by
an indexed equality lookup.
"""

from __future__ import annotations

import hashlib
import secrets


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def generate(marker: str) -> tuple[str, str]:
    """A new secret starting with `marker` (tells its kind apart in logs and leaks), and its digest."""
    plaintext = marker + secrets.token_urlsafe(32)
    return plaintext, digest(plaintext)
