"""Encryption of every Temporal payload (workflow and activity inputs, results, signals, updates, memos and
failure messages) with AES-256-GCM, so histories hold no activation code, client secret or personal data.

Keys come from TEMPORAL_PAYLOAD_KEYS as `kid:base64key,...`: the first key encrypts, every key decrypts,
and each payload names its key id in its metadata, so keys rotate by putting a new one first and keeping
the old ones until the histories they encrypted are past retention. Payloads that were never encrypted
(histories recorded before the codec, tests/histories) decode as they are.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
from collections.abc import Sequence

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes, PayloadCodec

from ttelgo.settings import ConfigurationError

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE_BYTES = 12
KEY_BYTES = 32


def parse_keys(spec: str) -> dict[str, bytes]:
    """`kid:base64key,...` in order of use (the first encrypts). The message never repeats a key."""
    keys: dict[str, bytes] = {}
    for item in (part.strip() for part in spec.split(",")):
        kid, sep, encoded = item.partition(":")
        if not sep or not kid or kid in keys:
            raise ConfigurationError(
                "TEMPORAL_PAYLOAD_KEYS must be `kid:base64key` items, comma-separated, with distinct ids"
            )
        try:
            key = base64.b64decode(encoded, validate=True)
        except binascii.Error as exc:
            raise ConfigurationError(f"TEMPORAL_PAYLOAD_KEYS: key {kid!r} is not base64") from exc
        if len(key) != KEY_BYTES:
            raise ConfigurationError(f"TEMPORAL_PAYLOAD_KEYS: key {kid!r} must be {KEY_BYTES} bytes")
        keys[kid] = key
    return keys


def new_key_spec(kid: str) -> str:
    """A fresh `kid:base64key` item (the dev stack's key, or an operator's next key)."""
    return f"{kid}:{base64.b64encode(os.urandom(KEY_BYTES)).decode()}"


class EncryptionCodec(PayloadCodec):
    def __init__(self, keys: dict[str, bytes]) -> None:
        if not keys:
            raise ConfigurationError("TEMPORAL_PAYLOAD_KEYS names no key")
        self._ciphers = {kid: AESGCM(key) for kid, key in keys.items()}
        self._current = next(iter(keys))

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self._current].encrypt(nonce, payload.SerializeToString(), None)
        return Payload(metadata={"encoding": ENCODING, KEY_ID: self._current.encode()}, data=nonce + sealed)

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        kid = payload.metadata.get(KEY_ID, b"").decode()
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise ValueError(f"payload encrypted with key id {kid!r}, which TEMPORAL_PAYLOAD_KEYS lacks")
        plain = cipher.decrypt(payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:], None)
        decoded = Payload()
        decoded.ParseFromString(plain)
        return decoded


def is_encrypted(payload: Payload) -> bool:
    return payload.metadata.get("encoding") == ENCODING


def data_converter(payload_keys: str | None) -> DataConverter:
    """Pydantic payloads, encrypted when keys are configured; failure messages and stack traces move into
    an encoded (so encrypted) attribute. Without keys (only outside production) payloads stay plain."""
    if not payload_keys:
        return pydantic_data_converter
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=EncryptionCodec(parse_keys(payload_keys)),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )
