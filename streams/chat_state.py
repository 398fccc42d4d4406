"""The chat decider's state: what it knows of a chat and of a message, and their table codec.

The Faust tables `chat_state` and `message_index` hold these as plain JSON objects (what their
changelogs carry and `/table/` shows); `to_json`/`*_from_json` are the one place that turns one
into the other, at the boundary of the table store. The JSON shape is the one the tables had when
they held dicts, so existing changelogs still recover.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from schemas.models import ChatType, Role

JsonObject = dict[str, Any]
"""A decoded JSON object, as a table's changelog holds it."""


@dataclass(frozen=True, slots=True)
class ChatState:
    type: ChatType
    title: str | None
    created_at: str
    """ISO 8601, as the `chat.created` event said."""
    created_by: str
    members: Mapping[str, Role]
    """user id -> role, in the order they joined (an owner who leaves hands over by that order)."""
    last_seq: int

    def at_seq(self, last_seq: int) -> ChatState:
        """This state with a new last `seq`: built directly, as every message sent does it
        (`dataclasses.replace` costs twice as much)."""
        return ChatState(self.type, self.title, self.created_at, self.created_by, self.members, last_seq)

    def role_of(self, user_id: str) -> Role | None:
        return self.members.get(user_id)

    def to_json(self) -> JsonObject:
        """The members mapping is shared, not copied: states are never changed in place."""
        return {
            "type": self.type,
            "title": self.title,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "members": self.members,
            "last_seq": self.last_seq,
        }


@dataclass(frozen=True, slots=True)
class StoredMessage:
    id: str
    chat_id: str
    seq: int
    sender_id: str
    text: str
    client_msg_id: str
    created_at: str
    edited_at: str | None = None
    deleted: bool = False

    def to_json(self) -> JsonObject:
        """Spelled out: `dataclasses.asdict` deep-copies, and this runs for every message sent."""
        return {
            "id": self.id,
            "chat_id": self.chat_id,
            "seq": self.seq,
            "sender_id": self.sender_id,
            "text": self.text,
            "client_msg_id": self.client_msg_id,
            "created_at": self.created_at,
            "edited_at": self.edited_at,
            "deleted": self.deleted,
        }


def chat_from_json(value: JsonObject) -> ChatState:
    """Trusted: the table holds only what `ChatState.to_json` wrote."""
    return ChatState(
        type=value["type"],
        title=value["title"],
        created_at=value["created_at"],
        created_by=value["created_by"],
        members=cast(Mapping[str, Role], value["members"]),
        last_seq=value["last_seq"],
    )


def message_from_json(value: JsonObject) -> StoredMessage:
    return StoredMessage(**value)
