"""The chats projection: `chat.events` into `chats` and `chat_members`."""

from __future__ import annotations

from projections.model import Params, Projection, Table, UnexpectedEvent
from schemas.events import ChatCreated, Event, MemberAdded, MemberRemoved, RoleChanged
from schemas.topics import CHAT_EVENTS

STATEMENT = """
WITH created AS (
    INSERT INTO chats (id, type, title, created_by, created_at)
    SELECT $2::uuid, $3::text, $4::text, $5::uuid, $10::timestamptz
    WHERE $1::text = 'chat.created'
    ON CONFLICT DO NOTHING
    RETURNING id
), founders AS (
    INSERT INTO chat_members (chat_id, user_id, role, joined_at)
    SELECT created.id, m.user_id, m.role, $10
    FROM created, unnest($6::uuid[], $7::text[]) AS m (user_id, role)
    ON CONFLICT DO NOTHING
), added AS (
    INSERT INTO chat_members AS cm (chat_id, user_id, role, joined_at)
    SELECT $2, $8::uuid, $9::text, $10
    WHERE $1 = 'chat.member_added'
    ON CONFLICT (chat_id, user_id) DO UPDATE SET role = excluded.role
), removed AS (
    DELETE FROM chat_members
    WHERE $1 = 'chat.member_removed' AND chat_id = $2 AND user_id = $8
)
UPDATE chat_members SET role = $9
WHERE $1 = 'chat.role_changed' AND chat_id = $2 AND user_id = $8
"""
"""$1 type, $2 chat_id, $3 chat type, $4 title, $5 created_by, $6 member ids, $7 their roles,
$8 user_id, $9 role, $10 occurred_at.

The founding members are written only with a new chat row, so a repeated `chat.created` cannot
bring back a member removed since. Adding a member already there changes its role and keeps its
`joined_at`.
"""


def params(event: Event) -> Params:
    p = event.payload
    at = event.occurred_at
    if isinstance(p, ChatCreated):
        ids = [m.user_id for m in p.members]
        roles = [m.role for m in p.members]
        return (event.type, p.chat_id, p.type, p.title, p.created_by, ids, roles, None, None, at)
    if isinstance(p, MemberAdded):
        return (event.type, p.chat_id, None, None, None, None, None, p.user_id, p.role, at)
    if isinstance(p, MemberRemoved):
        return (event.type, p.chat_id, None, None, None, None, None, p.user_id, None, at)
    if isinstance(p, RoleChanged):
        return (event.type, p.chat_id, None, None, None, None, None, p.user_id, p.role, at)
    raise UnexpectedEvent(event.type)


CHATS = Projection(
    name="chats",
    topic=CHAT_EVENTS,
    tables=(
        Table(
            "chats",
            ("id",),
            (
                "id uuid",
                "type text NOT NULL CHECK (type IN ('direct', 'group'))",
                "title text",
                "created_by uuid NOT NULL",
                "created_at timestamptz NOT NULL",
            ),
        ),
        Table(
            "chat_members",
            ("chat_id", "user_id"),
            (
                "chat_id uuid NOT NULL",
                "user_id uuid NOT NULL",
                "role text NOT NULL CHECK (role IN ('owner', 'admin', 'member'))",
                "joined_at timestamptz NOT NULL",
            ),
            ("CREATE INDEX chat_members_by_user ON chat_members (user_id)",),
        ),
    ),
    statement=STATEMENT,
    params=params,
    version=1,
)
