"""The messages projection: `message.events` into `messages`, `chat_activity` and `read_markers`."""

from __future__ import annotations

import uuid

from projections.model import Params, Projection, Table, UnexpectedEvent
from projections.sealed_texts import SealedParam
from schemas.events import CarriesText, Event, MessageDeleted, MessageEdited, MessageSent, ReadMarkerMoved
from schemas.topics import MESSAGE_EVENTS

UNREAD_AFTER = """
    SELECT count(*) FROM messages
    WHERE chat_id = {chat} AND seq > {seq} AND sender_id <> {user} AND NOT deleted
"""

STATEMENT = f"""
WITH sent AS (
    INSERT INTO messages (id, chat_id, seq, sender_id, text, client_msg_id, created_at)
    SELECT $3::uuid, $2::uuid, $4::bigint, $5::uuid, $6::text, $7::text, $9::timestamptz
    WHERE $1::text = 'message.sent'
    ON CONFLICT DO NOTHING
    RETURNING id, chat_id, seq, sender_id, created_at
), activity AS (
    INSERT INTO chat_activity AS a (chat_id, last_seq, last_message_id, last_activity_at)
    SELECT chat_id, seq, id, created_at FROM sent
    ON CONFLICT (chat_id) DO UPDATE
    SET last_seq = excluded.last_seq, last_message_id = excluded.last_message_id,
        last_activity_at = excluded.last_activity_at
    WHERE excluded.last_seq > a.last_seq
), delivered AS (
    INSERT INTO read_markers AS m (chat_id, user_id, seq, unread_count, updated_at)
    SELECT sent.chat_id, r.user_id,
           CASE WHEN r.user_id = sent.sender_id THEN sent.seq ELSE 0 END,
           CASE WHEN r.user_id = sent.sender_id THEN 0 ELSE 1 END,
           sent.created_at
    FROM sent, (SELECT unnest($8::uuid[]) UNION SELECT $5) AS r (user_id)
    ON CONFLICT (chat_id, user_id) DO UPDATE
    SET seq = CASE WHEN m.user_id = $5 THEN greatest(m.seq, excluded.seq) ELSE m.seq END,
        unread_count = CASE WHEN m.user_id = $5 THEN 0 ELSE m.unread_count + 1 END,
        updated_at = CASE WHEN m.user_id = $5 THEN excluded.updated_at ELSE m.updated_at END
), changed AS (
    UPDATE messages
    SET text = CASE WHEN $1 = 'message.deleted' THEN '' ELSE $6 END,
        deleted = $1 = 'message.deleted',
        edited_at = CASE WHEN $1 = 'message.edited' THEN $9 ELSE edited_at END
    WHERE $1 IN ('message.edited', 'message.deleted') AND id = $3 AND NOT deleted
)
INSERT INTO read_markers AS m (chat_id, user_id, seq, unread_count, updated_at)
SELECT $2, $5, $4, ({UNREAD_AFTER.format(chat="$2", seq="$4", user="$5")}), $9
WHERE $1 = 'message.read'
ON CONFLICT (chat_id, user_id) DO UPDATE
SET seq = greatest(m.seq, excluded.seq),
    unread_count = ({UNREAD_AFTER.format(chat="m.chat_id", seq="greatest(m.seq, excluded.seq)", user="m.user_id")}),
    updated_at = excluded.updated_at
"""
"""$1 type, $2 chat_id, $3 message_id, $4 seq, $5 sender (sent) or reader (read), $6 text,
$7 client_msg_id, $8 recipients, $9 occurred_at.

- `message.sent` inserts the message; only if it is new (a repeated event changes nothing) does
  it move `chat_activity` forward and the read markers: +1 unread for each recipient but the
  sender, whose own marker moves to the message with nothing unread.
- `message.edited` / `message.deleted` change a message not deleted yet; a deletion empties the
  text and keeps `edited_at`. A deletion lowers no `unread_count`: the next `message.read` of each
  member counts again, without deleted messages.
- `message.read` moves the reader's marker forward only, and counts what others sent after it.
"""


TEXT_PARAM = 5


def text_param(p: CarriesText, message_id: object) -> str:
    """The text, or its sealed token to be opened before the statement runs (`projections.sealed_texts`)."""
    if p.sealed_text is None:
        return p.text or ""
    assert isinstance(message_id, uuid.UUID)
    return SealedParam(p.sealed_text, "message", message_id)


def params(event: Event) -> Params:
    p = event.payload
    at = event.occurred_at
    if isinstance(p, MessageSent):
        return (
            event.type,
            p.chat_id,
            p.message_id,
            p.seq,
            p.sender_id,
            text_param(p, p.message_id),
            p.client_msg_id,
            p.recipients,
            at,
        )
    if isinstance(p, MessageEdited):
        return (event.type, p.chat_id, p.message_id, p.seq, None, text_param(p, p.message_id), None, None, at)
    if isinstance(p, MessageDeleted):
        return (event.type, p.chat_id, p.message_id, p.seq, None, None, None, None, at)
    if isinstance(p, ReadMarkerMoved):
        return (event.type, p.chat_id, None, p.seq, p.user_id, None, None, None, at)
    raise UnexpectedEvent(event.type)


MESSAGES = Projection(
    name="messages",
    topic=MESSAGE_EVENTS,
    tables=(
        Table(
            "messages",
            ("id",),
            (
                "id uuid",
                "chat_id uuid NOT NULL",
                "seq bigint NOT NULL",
                "sender_id uuid NOT NULL",
                "text text NOT NULL",
                "client_msg_id text NOT NULL",
                "created_at timestamptz NOT NULL",
                "edited_at timestamptz",
                "deleted boolean NOT NULL DEFAULT false",
            ),
            ("ALTER TABLE messages ADD CONSTRAINT messages_chat_id_seq_key UNIQUE (chat_id, seq)",),
        ),
        Table(
            "chat_activity",
            ("chat_id",),
            (
                "chat_id uuid",
                "last_seq bigint NOT NULL",
                "last_message_id uuid NOT NULL",
                "last_activity_at timestamptz NOT NULL",
            ),
        ),
        Table(
            "read_markers",
            ("chat_id", "user_id"),
            (
                "chat_id uuid NOT NULL",
                "user_id uuid NOT NULL",
                "seq bigint NOT NULL DEFAULT 0",
                "unread_count bigint NOT NULL DEFAULT 0",
                "updated_at timestamptz NOT NULL",
            ),
        ),
    ),
    statement=STATEMENT,
    params=params,
    version=1,
    sealed_params=(TEXT_PARAM,),
)
