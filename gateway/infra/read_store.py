"""Reads for clients, from the PostgreSQL read models (written by projections/ only).

Every function takes a pool (or connection) and returns the contract's resources as plain JSON
dicts, ready to send; authorization is the caller's: functions named `*_for` take the caller and
return nothing for a chat the caller is not in.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Protocol

import asyncpg

from schemas.commands import ChatResult, MessageResult, Result
from schemas.models import Chat, Member, Message, ReadMarker, User


class Pool(Protocol):
    """What the reads need of an asyncpg pool or connection."""

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]: ...
    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None: ...
    async def fetchval(self, query: str, *args: Any) -> Any: ...


USER_COLUMNS = "id, username, display_name, bio, created_at"


def message_text(alias: str) -> str:
    """A message's text as clients see it: null for a deleted message of an erased account
    (contract v1.1, "Erasure"), the empty string for one deleted otherwise (as v1 has it)."""
    return (
        f"CASE WHEN {alias}.deleted AND EXISTS (SELECT 1 FROM erased_accounts e WHERE e.user_id = {alias}.sender_id)"
        f" THEN NULL ELSE {alias}.text END"
    )


MESSAGE_COLUMNS = (
    f"id, chat_id, seq, sender_id, {message_text('messages')} AS text, client_msg_id, created_at, edited_at, deleted"
)


def user_json(row: asyncpg.Record) -> dict[str, Any]:
    return User.model_validate(dict(row)).model_dump(mode="json")


def message_json(row: asyncpg.Record) -> dict[str, Any]:
    return Message.model_validate(dict(row)).model_dump(mode="json")


async def user_by_id(db: Pool, user_id: uuid.UUID) -> dict[str, Any] | None:
    row = await db.fetchrow(f"SELECT {USER_COLUMNS} FROM users WHERE id = $1", user_id)
    return user_json(row) if row else None


PASSWORD_HASH = (
    "coalesce(p.password_hash, c.password_hash) AS password_hash FROM users u"
    " LEFT JOIN password_credentials p ON p.user_id = u.id LEFT JOIN user_credentials c ON c.user_id = u.id"
)
"""A user's hash: its latest credential record (`password_credentials`), else the one its
registration carried when hashes were still in the event log (`user_credentials`)."""


async def credentials(db: Pool, username: str) -> tuple[dict[str, Any], str] | None:
    """The user and password hash of a folded username, for login."""
    row = await db.fetchrow(
        f"SELECT u.{USER_COLUMNS.replace(', ', ', u.')}, {PASSWORD_HASH} WHERE u.username = $1", username
    )
    if row is None or row["password_hash"] is None:
        return None
    return user_json(row), row["password_hash"]


async def credentials_by_id(db: Pool, user_id: uuid.UUID) -> tuple[dict[str, Any], str] | None:
    """The user and password hash of `user_id`, for a password change."""
    row = await db.fetchrow(f"SELECT u.{USER_COLUMNS.replace(', ', ', u.')}, {PASSWORD_HASH} WHERE u.id = $1", user_id)
    if row is None or row["password_hash"] is None:
        return None
    return user_json(row), row["password_hash"]


async def chats_to_erase_in(db: Pool, user_id: uuid.UUID) -> list[uuid.UUID]:
    """The chats an erased account is still in, or has a message that is not deleted in (the
    second scans the messages: it runs once per erasure)."""
    rows = await db.fetch(
        "SELECT chat_id FROM chat_members WHERE user_id = $1"
        " UNION SELECT chat_id FROM messages WHERE sender_id = $1 AND NOT deleted ORDER BY chat_id",
        user_id,
    )
    return [r["chat_id"] for r in rows]


async def unfinished_erasures(db: Pool, settle_s: float = 60.0, window_s: float = 86400.0) -> list[uuid.UUID]:
    """Accounts erased between `window_s` and `settle_s` ago that are still in a chat or have a
    message that is not deleted: their erasure stopped midway."""
    rows = await db.fetch(
        "SELECT e.user_id FROM erased_accounts e"
        " WHERE e.erased_at BETWEEN now() - make_interval(secs => $1) AND now() - make_interval(secs => $2)"
        " AND (EXISTS (SELECT 1 FROM chat_members m WHERE m.user_id = e.user_id)"
        " OR EXISTS (SELECT 1 FROM messages g WHERE g.sender_id = e.user_id AND NOT g.deleted))",
        window_s,
        settle_s,
    )
    return [r["user_id"] for r in rows]


async def live_message_ids(db: Pool, chat_id: uuid.UUID, sender_id: uuid.UUID) -> list[uuid.UUID]:
    """The messages `sender_id` wrote in `chat_id` that are not deleted, oldest first."""
    rows = await db.fetch(
        "SELECT id FROM messages WHERE chat_id = $1 AND sender_id = $2 AND NOT deleted ORDER BY seq",
        chat_id,
        sender_id,
    )
    return [r["id"] for r in rows]


async def existing_user_ids(db: Pool, user_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    rows = await db.fetch("SELECT id FROM users WHERE id = ANY($1::uuid[])", user_ids)
    return {r["id"] for r in rows}


async def search_users(db: Pool, prefix: str, limit: int) -> list[dict[str, Any]]:
    pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    rows = await db.fetch(
        f"SELECT {USER_COLUMNS} FROM users WHERE username LIKE $1 ORDER BY username LIMIT $2", pattern, limit
    )
    return [user_json(r) for r in rows]


async def is_member(db: Pool, chat_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    return bool(
        await db.fetchval(
            "SELECT EXISTS (SELECT 1 FROM chat_members WHERE chat_id = $1 AND user_id = $2)", chat_id, user_id
        )
    )


async def member_ids(db: Pool, chat_id: uuid.UUID) -> list[uuid.UUID]:
    rows = await db.fetch("SELECT user_id FROM chat_members WHERE chat_id = $1", chat_id)
    return [r["user_id"] for r in rows]


async def read_markers(db: Pool, chat_id: uuid.UUID) -> list[dict[str, Any]]:
    """Every member's read marker, in the order they joined (0 for a member who read nothing)."""
    rows = await db.fetch(
        "SELECT m.user_id, coalesce(r.seq, 0) AS seq FROM chat_members m"
        " LEFT JOIN read_markers r ON r.chat_id = m.chat_id AND r.user_id = m.user_id"
        " WHERE m.chat_id = $1 ORDER BY m.joined_at, m.user_id",
        chat_id,
    )
    return [ReadMarker(user_id=r["user_id"], seq=r["seq"]).model_dump(mode="json") for r in rows]


async def chat_partner_ids(db: Pool, user_id: uuid.UUID) -> list[uuid.UUID]:
    """Everyone who shares a chat with `user_id` (for presence)."""
    rows = await db.fetch(
        "SELECT DISTINCT o.user_id FROM chat_members m JOIN chat_members o ON o.chat_id = m.chat_id"
        " WHERE m.user_id = $1 AND o.user_id <> $1",
        user_id,
    )
    return [r["user_id"] for r in rows]


CHAT_QUERY = f"""
SELECT c.id, c.type, c.title, c.created_at,
       coalesce(a.last_activity_at, c.created_at) AS activity,
       coalesce(r.unread_count, 0) AS unread_count,
       (SELECT json_agg(json_build_object('user_id', m.user_id, 'role', m.role) ORDER BY m.joined_at, m.user_id)
          FROM chat_members m WHERE m.chat_id = c.id) AS members,
       lm.id AS lm_id, lm.chat_id AS lm_chat_id, lm.seq AS lm_seq, lm.sender_id AS lm_sender_id,
       {message_text("lm")} AS lm_text, lm.client_msg_id AS lm_client_msg_id, lm.created_at AS lm_created_at,
       lm.edited_at AS lm_edited_at, lm.deleted AS lm_deleted
FROM chat_members me
JOIN chats c ON c.id = me.chat_id
LEFT JOIN chat_activity a ON a.chat_id = c.id
LEFT JOIN messages lm ON lm.id = a.last_message_id
LEFT JOIN read_markers r ON r.chat_id = c.id AND r.user_id = me.user_id
WHERE me.user_id = $1
"""


def chat_json(row: asyncpg.Record) -> dict[str, Any]:
    import orjson

    members = row["members"]
    if isinstance(members, str):
        members = orjson.loads(members)
    last = None
    if row["lm_id"] is not None:
        last = Message.model_validate({k[3:]: row[k] for k in row.keys() if k.startswith("lm_")})  # noqa: SIM118 (a Record iterates its values)
    return Chat(
        id=row["id"],
        type=row["type"],
        title=row["title"],
        created_at=row["created_at"],
        members=[Member.model_validate(m) for m in members or []],
        last_message=last,
        unread_count=row["unread_count"],
    ).model_dump(mode="json")


async def chats_for(db: Pool, user_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await db.fetch(CHAT_QUERY + " ORDER BY activity DESC, c.id", user_id)
    return [chat_json(r) for r in rows]


async def chat_for(db: Pool, user_id: uuid.UUID, chat_id: uuid.UUID) -> dict[str, Any] | None:
    row = await db.fetchrow(CHAT_QUERY + " AND c.id = $2", user_id, chat_id)
    return chat_json(row) if row else None


async def message_by_id(db: Pool, message_id: uuid.UUID) -> dict[str, Any] | None:
    row = await db.fetchrow(f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1", message_id)
    return message_json(row) if row else None


async def messages_page(
    db: Pool, chat_id: uuid.UUID, *, before: int | None, after: int | None, limit: int
) -> list[dict[str, Any]]:
    """Ascending by seq. With `after`: the first `limit` after it; else the last `limit` before
    `before` (or the latest)."""
    if after is not None:
        rows = await db.fetch(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE chat_id = $1 AND seq > $2"
            " AND ($3::bigint IS NULL OR seq < $3) ORDER BY seq LIMIT $4",
            chat_id,
            after,
            before,
            limit,
        )
    else:
        rows = await db.fetch(
            f"SELECT * FROM (SELECT {MESSAGE_COLUMNS} FROM messages WHERE chat_id = $1"
            " AND ($2::bigint IS NULL OR seq < $2) ORDER BY seq DESC LIMIT $3) t ORDER BY seq",
            chat_id,
            before,
            limit,
        )
    return [message_json(r) for r in rows]


async def chat_activity_of(db: Pool, user_id: uuid.UUID) -> list[tuple[uuid.UUID, int, datetime]]:
    """(chat id, last seq, last activity) of every chat of `user_id` with a message."""
    rows = await db.fetch(
        "SELECT cm.chat_id, ca.last_seq, ca.last_activity_at FROM chat_members cm"
        " JOIN chat_activity ca ON ca.chat_id = cm.chat_id WHERE cm.user_id = $1",
        user_id,
    )
    return [(r["chat_id"], r["last_seq"], r["last_activity_at"]) for r in rows]


async def holds_result(db: Pool, result: Result) -> bool:
    """Whether the message, or the chat with each of its members, of a reply's result is in the
    read models (a result naming neither asks for nothing)."""
    if isinstance(result, MessageResult):
        return bool(await db.fetchval("SELECT EXISTS (SELECT 1 FROM messages WHERE id = $1)", result.message.id))
    if isinstance(result, ChatResult):
        members = [m.user_id for m in result.chat.members]
        found = await db.fetchval(
            "SELECT count(*) FROM chats c JOIN chat_members m ON m.chat_id = c.id"
            " WHERE c.id = $1 AND m.user_id = ANY($2)",
            result.chat.id,
            members,
        )
        return bool(found == len(members))
    return True
