"""The sealed form of personal content (a message's text, a profile field), as it crosses processes.

A sealed text is one ASCII string, `sealed.v1.<key_id>.<nonce>.<ciphertext>` (nonce and
ciphertext in unpadded base64url), so that it fits every field that carried the plain text. The
cipher itself (AES-256-GCM) is `runtime.sealing`; this module is only the format: the token, the
key ids and the associated data that binds a ciphertext to its place. See docs/erasure.md.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from typing import Literal, NamedTuple

PREFIX = "sealed"
VERSION = "v1"
NONCE_BYTES = 12
KEY_BYTES = 32
TAG_BYTES = 16
KEY_ID = re.compile(r"^[a-z]+(:[0-9a-f-]{36}){1,2}$")
"""`message:<message_id>:<command_id>` or `profile:<user_id>`: no dot (the token's separator)."""

Purpose = Literal["message", "profile.display_name", "profile.bio"]
ProfileField = Literal["display_name", "bio"]
PROFILE_PURPOSES: dict[ProfileField, Purpose] = {"display_name": "profile.display_name", "bio": "profile.bio"}
"""What each sealed profile field is bound to (with the user id and the key `profile:<user_id>`)."""
SEALED_TEXT_MAX = 22_000
"""The longest token of a 4,000-character text: 16,000 UTF-8 bytes and the tag in base64url
(21,356 characters), the prefix, the key id and the nonce."""
SEALED_FIELD_MAX = 2_800
"""The longest token of a profile field: a 500-character bio (`schemas.api.ProfilePatch`) is at
most 2,000 UTF-8 bytes and the tag in base64url (2,688 characters), the prefix, a profile key id
and the nonce (2,760 in all)."""


class MalformedSealed(ValueError):
    """A string that is no sealed token of this version."""


class SealedToken(NamedTuple):
    key_id: str
    nonce: bytes
    ciphertext: bytes
    """With the 16-byte tag at its end, as AES-GCM gives it."""

    def encode(self) -> str:
        return f"{PREFIX}.{VERSION}.{self.key_id}.{b64(self.nonce)}.{b64(self.ciphertext)}"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise MalformedSealed("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as error:
        raise MalformedSealed(f"not base64url: {error}") from None


def parse(token: str) -> SealedToken:
    """The parts of `token`; `MalformedSealed` for anything else (never a guess)."""
    parts = token.split(".")
    if len(parts) != 5 or parts[0] != PREFIX:
        raise MalformedSealed("not a sealed token")
    if parts[1] != VERSION:
        raise MalformedSealed(f"sealed token version {parts[1]!r} is not {VERSION!r}")
    key_id, nonce, ciphertext = parts[2], unb64(parts[3]), unb64(parts[4])
    if not KEY_ID.match(key_id):
        raise MalformedSealed("not a key id")
    if len(nonce) != NONCE_BYTES or len(ciphertext) < TAG_BYTES:
        raise MalformedSealed("nonce or ciphertext of the wrong length")
    return SealedToken(key_id, nonce, ciphertext)


def message_key_id(message_id: uuid.UUID, command_id: uuid.UUID) -> str:
    """The key of one version of a message: the send, or an edit, that brought its text."""
    return f"message:{message_id}:{command_id}"


def profile_key_id(user_id: uuid.UUID) -> str:
    """The key of a user's profile fields, made at registration, shredded by the account's erasure."""
    return f"profile:{user_id}"


def associated_data(purpose: Purpose, subject_id: uuid.UUID, key_id: str) -> bytes:
    """What a ciphertext is bound to: its kind of content, the message or user it belongs to, and
    its key (so its version). A ciphertext moved anywhere else does not open."""
    return f"{purpose}|{subject_id}|{key_id}".encode("ascii")


def plain_or_sealed(plain: str | None, sealed: str | None, field: str) -> None:
    """A profile field is carried plain (a gateway of before sealing) or sealed, never both."""
    if plain is not None and sealed is not None:
        raise ValueError(f"{field} and sealed_{field} exclude each other")
