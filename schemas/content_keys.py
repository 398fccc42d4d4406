"""The records of `content.keys`, the key store of crypto-shredding (docs/erasure.md).

The topic is compacted and keyed by key id: a record holds one data key; a tombstone (a null
value) for a key id erases it, and compaction then drops every earlier record of that key id from
the broker's disk. Whatever reads the topic keeps a key id's latest state: a key, or shredded.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from schemas import codec
from schemas.sealed import KEY_BYTES, KEY_ID, MalformedSealed, b64, unb64


class MalformedKeyRecord(ValueError):
    """A record of `content.keys` that is neither a data key nor a tombstone."""


class ContentKey(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    key_id: str = Field(pattern=KEY_ID.pattern)
    key: str
    """The data key, 32 bytes in unpadded base64url."""
    owner_id: uuid.UUID
    """Whose content the key seals (the sender, the user): an account's erasure shreds all of them."""
    created_at: datetime

    @field_validator("key")
    @classmethod
    def _is_a_key(cls, value: str) -> str:
        try:
            raw = unb64(value)
        except MalformedSealed as error:
            raise ValueError(str(error)) from None
        if len(raw) != KEY_BYTES:
            raise ValueError(f"a data key is {KEY_BYTES} bytes")
        return value

    @property
    def key_bytes(self) -> bytes:
        return unb64(self.key)


ROLL_KEY_ID = "roll:00000000-0000-0000-0000-000000000000"
"""The key id of the records that keep `content.keys` moving: Kafka rolls a segment (and so lets
it be compacted) only when a record comes after `segment.ms`, so a quiet topic would keep its last
shredded keys for ever. A tombstone of this id, written to every partition every few seconds
(`projections/app.py`), seals nothing and compacts to one record per partition."""


def key_record(key_id: str, key: bytes, owner_id: uuid.UUID, created_at: datetime) -> tuple[bytes, bytes]:
    """The record key and value that store `key` under `key_id`."""
    record = ContentKey(key_id=key_id, key=b64(key), owner_id=owner_id, created_at=created_at)
    return key_id.encode("ascii"), codec.dumps(record)


def tombstone(key_id: str) -> tuple[bytes, None]:
    """The record that erases `key_id`'s key."""
    if not KEY_ID.match(key_id):
        raise ValueError(f"not a key id: {key_id!r}")
    return key_id.encode("ascii"), None


def decode_key_record(key: bytes | None, value: bytes | None) -> tuple[str, ContentKey | None]:
    """The key id a record names and its key, or None for a tombstone; `MalformedKeyRecord` else."""
    if not key:
        raise MalformedKeyRecord("a content key record without a key id")
    try:
        key_id = key.decode("ascii")
    except UnicodeDecodeError:
        raise MalformedKeyRecord("a key id is ASCII") from None
    if not KEY_ID.match(key_id):
        raise MalformedKeyRecord(f"not a key id: {key_id!r}")
    if value is None:
        return key_id, None
    try:
        record = ContentKey.model_validate(codec.loads(value))
    except (ValueError, ValidationError) as error:
        raise MalformedKeyRecord(f"not a content key: {error}".splitlines()[0]) from None
    if record.key_id != key_id:
        raise MalformedKeyRecord(f"record {key_id!r} holds the key of {record.key_id!r}")
    return key_id, record
