"""The users projection: `user.events` into `users` and `user_credentials`."""

from __future__ import annotations

from projections.model import Params, Projection, Table, UnexpectedEvent
from schemas.events import Event, PasswordChanged, ProfileUpdated, UserRegistered
from schemas.topics import USER_EVENTS

STATEMENT = """
WITH registered AS (
    INSERT INTO users (id, username, display_name, bio, created_at)
    SELECT $2::uuid, $3::text, $4::text, coalesce($5::text, ''), $7::timestamptz
    WHERE $1::text = 'user.registered'
    ON CONFLICT DO NOTHING
    RETURNING id
), credentials AS (
    INSERT INTO user_credentials (user_id, password_hash)
    SELECT id, $6::text FROM registered WHERE $6::text IS NOT NULL
    ON CONFLICT DO NOTHING
)
UPDATE users
SET display_name = coalesce($4, display_name), bio = coalesce($5, bio)
WHERE $1 = 'user.profile_updated' AND id = $2
"""
"""$1 type, $2 user_id, $3 username, $4 display_name, $5 bio, $6 password_hash, $7 occurred_at.

A registration whose id or username is taken changes nothing, credentials included; a profile
update sets only the fields it carries. Only the registrations written before the hash left the
event log carry one (`user_credentials` keeps those); the others' hashes are the credentials
projection's (`projections/credentials.py`).

Still version 1: every event the statement of before could store gives the same rows now (a
hashless registration and `user.password_changed` were refused by it, as malformed and unknown,
and are what it now takes), so a read model it built is this code's too, and upgrading rebuilds
nothing. The projections workers are upgraded before the streams workers write those events
(docs/operations.md); had they met some, their dead letters are replayed.
"""


def params(event: Event) -> Params:
    payload = event.payload
    if isinstance(payload, UserRegistered):
        return (
            event.type,
            payload.user_id,
            payload.username,
            payload.display_name,
            payload.bio,
            payload.password_hash,
            event.occurred_at,
        )
    if isinstance(payload, ProfileUpdated):
        return (event.type, payload.user_id, None, payload.display_name, payload.bio, None, event.occurred_at)
    if isinstance(payload, PasswordChanged):  # no row of this projection changes (the hash is the credentials')
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
            (
                "ALTER TABLE user_credentials ADD CONSTRAINT user_credentials_user_id_fkey"
                " FOREIGN KEY (user_id) REFERENCES users (id)",
            ),
        ),
    ),
    statement=STATEMENT,
    params=params,
    version=1,
)
