"""The credentials projection: the compacted topic `user.credentials` into `password_credentials`.

A record holds a user's password hash (newest wins: a user's records are in one partition, in the
order the user agent decided them); a tombstone (an account's erasure) deletes the row. The topic
is compacted, so a rebuild reads only each user's latest record (and the tombstones of the last
hour): the rows are the same, since the statement keeps nothing but the latest either way.

`user.events` and `user.credentials` are read apart, in any order, so this table has no foreign
key to `users`: a hash may come before its user's row. The hashes of the accounts registered
before the hash left the event log stay in the users projection's `user_credentials`, filled from
their `user.registered`; login reads this table's hash where there is one, else that one
(`gateway.infra.read_store.credentials`).
"""

from __future__ import annotations

from projections.model import Params, Projection, Record, Table, UnexpectedEvent
from schemas.credentials import decode_credential_record
from schemas.events import Event
from schemas.topics import USER_CREDENTIALS

STATEMENT = """
WITH erased AS (
    DELETE FROM password_credentials WHERE $2::text IS NULL AND user_id = $1::uuid
)
INSERT INTO password_credentials (user_id, password_hash, changed_at)
SELECT $1::uuid, $2::text, $3::timestamptz WHERE $2::text IS NOT NULL
ON CONFLICT (user_id) DO UPDATE SET password_hash = excluded.password_hash, changed_at = excluded.changed_at
"""
"""$1 user_id, $2 password_hash (null: a tombstone), $3 changed_at (null: a tombstone)."""


def decode(record: Record) -> Params:
    user_id, credential = decode_credential_record(record.key, record.value)
    if credential is None:
        return (user_id, None, None)
    return (user_id, credential.password_hash, credential.changed_at)


def no_events(event: Event) -> Params:
    raise UnexpectedEvent(event.type)


CREDENTIALS = Projection(
    name="credentials",
    topic=USER_CREDENTIALS,
    tables=(
        Table(
            "password_credentials",
            ("user_id",),
            ("user_id uuid", "password_hash text NOT NULL", "changed_at timestamptz NOT NULL"),
        ),
    ),
    statement=STATEMENT,
    params=no_events,
    decode=decode,
    version=1,
)
