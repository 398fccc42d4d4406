"""The users projection: `user.events` into `users`, `user_credentials` and `erased_accounts`."""

from __future__ import annotations

import uuid

from projections.model import Params, Projection, Table, UnexpectedEvent
from projections.sealed_texts import SealedParam
from schemas.events import Event, PasswordChanged, ProfileUpdated, UserErased, UserRegistered
from schemas.sealed import PROFILE_PURPOSES, ProfileField
from schemas.topics import USER_EVENTS

STATEMENT = """
WITH registered AS (
    INSERT INTO users (id, username, display_name, bio, created_at)
    SELECT $2::uuid, $3::text, $4::text, coalesce($5::text, ''), $7::timestamptz
    WHERE $1::text = 'user.registered'
    ON CONFLICT (username) DO UPDATE
    SET id = excluded.id, display_name = excluded.display_name, bio = excluded.bio, created_at = excluded.created_at
    WHERE (users.created_at, users.id) < (excluded.created_at, excluded.id)
    RETURNING id
), credentials AS (
    INSERT INTO user_credentials (user_id, password_hash)
    SELECT id, $6::text FROM registered WHERE $6::text IS NOT NULL
    ON CONFLICT DO NOTHING
), erased AS (
    INSERT INTO erased_accounts (user_id, erased_at)
    SELECT $2::uuid, $7::timestamptz
    WHERE $1::text = 'user.erased'
    ON CONFLICT DO NOTHING
    RETURNING user_id
), forgotten_credentials AS (
    DELETE FROM user_credentials WHERE user_id IN (SELECT user_id FROM erased)
), forgotten AS (
    DELETE FROM users WHERE id IN (SELECT user_id FROM erased)
)
UPDATE users
SET display_name = coalesce($4, display_name), bio = coalesce($5, bio)
WHERE $1 = 'user.profile_updated' AND id = $2
"""
"""$1 type, $2 user_id, $3 username, $4 display_name, $5 bio, $6 password_hash, $7 occurred_at.

A registration of a username another user holds takes the row over if it is the later one (by
`created_at`, then id), else changes nothing, credentials included: the user agent accepts a taken
name only once its holder is erased and the quarantine is over, and the two users' events lie in
different partitions (keyed by user id), so a rebuild may apply the new registration before the
old erasure; "the later registration holds the name" gives the same rows in any order. A
registration applied again changes nothing. A profile update sets only the fields it carries.
Only the registrations written before the hash left the event log carry one (`user_credentials`
keeps those); the others' hashes are the credentials projection's (`projections/credentials.py`).
An erasure removes the user's row and its old credentials (its username is free in the read
model; the user agent keeps it claimed for the quarantine) and keeps the id and time in
`erased_accounts`, the first time only.

Version 2 (`erased_accounts`, no foreign key from `user_credentials`: a row taken over keeps the
old user's legacy hash, under the old id, until its erasure deletes it): migration 0005 makes a
version 1 model one of version 2, as no `user.erased` was written before it, so no username was
ever registered twice. A hashless registration and `user.password_changed` were
refused by the version 1 statement (malformed, unknown): the projections workers are upgraded
before the streams workers write those events (docs/operations.md); had they met some, their dead
letters are replayed.
"""


DISPLAY_NAME_PARAM, BIO_PARAM = 3, 4


def field_param(plain: str | None, sealed: str | None, field: ProfileField, user_id: uuid.UUID) -> str | None:
    """A profile field, or its sealed token to be opened before the statement runs
    (`projections.sealed_texts`: a shredded profile key gives the empty string); None: not changed."""
    if sealed is None:
        return plain
    return SealedParam(sealed, PROFILE_PURPOSES[field], user_id)


def params(event: Event) -> Params:
    payload = event.payload
    if isinstance(payload, UserRegistered):
        return (
            event.type,
            payload.user_id,
            payload.username,
            field_param(payload.display_name, payload.sealed_display_name, "display_name", payload.user_id),
            payload.bio,
            payload.password_hash,
            event.occurred_at,
        )
    if isinstance(payload, ProfileUpdated):
        return (
            event.type,
            payload.user_id,
            None,
            field_param(payload.display_name, payload.sealed_display_name, "display_name", payload.user_id),
            field_param(payload.bio, payload.sealed_bio, "bio", payload.user_id),
            None,
            event.occurred_at,
        )
    if isinstance(payload, PasswordChanged):  # no row of this projection changes (the hash is the credentials')
        return (event.type, payload.user_id, None, None, None, None, event.occurred_at)
    if isinstance(payload, UserErased):
        return (event.type, payload.user_id, None, None, None, None, event.occurred_at)
    raise UnexpectedEvent(event.type)


USERS = Projection(
    name="users",
    topic=USER_EVENTS,
    tables=(
        Table(
            "users",
            ("id",),
            (
                "id uuid",
                "username text NOT NULL",
                "display_name text NOT NULL",
                "bio text NOT NULL DEFAULT ''",
                "created_at timestamptz NOT NULL",
            ),
            (
                "ALTER TABLE users ADD CONSTRAINT users_username_key UNIQUE (username)",
                "CREATE INDEX users_username_prefix ON users (username text_pattern_ops)",
            ),
        ),
        Table(
            "user_credentials",
            ("user_id",),
            ("user_id uuid", "password_hash text NOT NULL"),
            (),
        ),
        Table(
            "erased_accounts",
            ("user_id",),
            ("user_id uuid", "erased_at timestamptz NOT NULL"),
            ("CREATE INDEX erased_accounts_by_time ON erased_accounts (erased_at)",),
        ),
    ),
    statement=STATEMENT,
    params=params,
    version=2,
    sealed_params=(DISPLAY_NAME_PARAM, BIO_PARAM),
)
