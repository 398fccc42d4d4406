"""Sealing and opening personal content with AES-256-GCM (`cryptography`), in the sealed form of
`schemas.sealed`. See docs/erasure.md.

Opening never guesses. What the key store says of a key id is one of three things: a key, a
tombstone (the content was erased: `None`), or nothing (the key id was never seen: lost, or not
caught up yet); and a key may fail to authenticate the ciphertext (a wrong or corrupt key, a
corrupt or moved ciphertext). Each is its own `Unopened` reason; only an authenticated
ciphertext gives text.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from schemas.sealed import KEY_BYTES, NONCE_BYTES, MalformedSealed, Purpose, SealedToken, associated_data, parse

Reason = Literal["shredded", "key_missing", "corrupt_key", "not_authentic", "malformed"]

KeyState = bytes | None
"""A key, or `None` for a key id whose key was shredded (a tombstone)."""


@dataclass(frozen=True)
class Unopened:
    """Why a sealed text gave no text. `shredded` is an erasure working as meant (the reader
    writes null); every other reason is a fault to report."""

    key_id: str
    reason: Reason

    @property
    def erased(self) -> bool:
        return self.reason == "shredded"


def new_key() -> bytes:
    """A fresh data key: random, never derived from anything, so that nothing can make it again."""
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


def seal(key: bytes, key_id: str, purpose: Purpose, subject_id: uuid.UUID, text: str) -> str:
    """`text` sealed with `key` (named `key_id`), bound to `purpose` and `subject_id`: a token."""
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = AESGCM(key).encrypt(nonce, text.encode("utf-8"), associated_data(purpose, subject_id, key_id))
    return SealedToken(key_id, nonce, ciphertext).encode()


def open_sealed(token: str, purpose: Purpose, subject_id: uuid.UUID, keys: Mapping[str, KeyState]) -> str | Unopened:
    """The text `token` seals, if `keys` holds its key and the key authenticates it for
    `purpose` and `subject_id`; else why not."""
    try:
        sealed = parse(token)
    except MalformedSealed:
        return Unopened("", "malformed")
    if sealed.key_id not in keys:
        return Unopened(sealed.key_id, "key_missing")
    key = keys[sealed.key_id]
    if key is None:
        return Unopened(sealed.key_id, "shredded")
    if len(key) != KEY_BYTES:
        return Unopened(sealed.key_id, "corrupt_key")
    aad = associated_data(purpose, subject_id, sealed.key_id)
    try:
        plain = AESGCM(key).decrypt(sealed.nonce, sealed.ciphertext, aad)
        return plain.decode("utf-8")
    except (InvalidTag, UnicodeDecodeError):
        return Unopened(sealed.key_id, "not_authentic")
