"""The records of `user.credentials`: each user's password hash, out of the event log (docs/erasure.md).

The topic is compacted and keyed by user id: the latest record of a user is the hash that logs
in; a tombstone (a null value) erases it (an account's erasure), and compaction then drops every
earlier hash of that user from the broker's disk. `user.registered` of this version carries no
hash, so the event topics, kept forever, keep none.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas import codec


class MalformedCredentialRecord(ValueError):
    """A record of `user.credentials` that is neither a credential nor a tombstone."""


class Credential(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    user_id: uuid.UUID
    password_hash: str = Field(min_length=1)
    """The encoded argon2 hash the gateway computed (`$argon2id$v=19$m=...`): the password never leaves it."""
    changed_at: datetime


CredentialRecord = tuple[bytes, bytes | None]
"""A record's key (the user id) and value (a `Credential`, or None for a tombstone)."""


ROLL_USER_ID = uuid.UUID(int=0)
"""No user: the key of the tombstones that keep `user.credentials` moving (Kafka rolls, and so
compacts, a segment only when a record arrives); erasing it deletes nothing."""


def credential_record(credential: Credential) -> CredentialRecord:
    return str(credential.user_id).encode("ascii"), codec.dumps(credential)


def tombstone(user_id: uuid.UUID) -> CredentialRecord:
    """The record that erases `user_id`'s password hash (an account's erasure)."""
    return str(user_id).encode("ascii"), None


def decode_credential_record(key: bytes | None, value: bytes | None) -> tuple[uuid.UUID, Credential | None]:
    """The user a record names and its credential, or None for a tombstone; `MalformedCredentialRecord` else."""
    if not key:
        raise MalformedCredentialRecord("a credential record without a user id")
    try:
        user_id = uuid.UUID(key.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise MalformedCredentialRecord("a credential record's key is a user id") from None
    if value is None:
        return user_id, None
    try:
        credential = Credential.model_validate(codec.loads(value))
    except (ValueError, ValidationError) as error:
        raise MalformedCredentialRecord(f"not a credential: {error}".splitlines()[0]) from None
    if credential.user_id != user_id:
        raise MalformedCredentialRecord(f"record {user_id} holds the credential of {credential.user_id}")
    return user_id, credential
