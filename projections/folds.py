"""Folds: a projection's final rows computed in memory from its events, for the bulk loader.

A fold takes the parameters `projection.params` gives for each event (the `$1, $2, ...` of the
projection's statement), in log order, and keeps the rows that executing the statement once per
event would leave in the tables; `rows()` then gives them, table by table, for a COPY. Each fold
models one statement text: `MODELLED` holds the sha256 of the statement each fold was written for,
and `fold_for` gives no fold for a projection whose statement differs (the loader then applies the
statement itself), so a changed statement never meets an outdated fold.

What a statement does, and so what its fold does, is written beside the statement
(`projections/messages.py`, `users.py`, `chats.py`). The parts that are easy to miss:

- `message.sent` that conflicts with a stored message (same id, or same chat and seq, deleted or
  not) changes nothing at all; otherwise every recipient but the sender gets one more unread, and
  the sender's marker moves to the message (never back) with nothing unread.
- `message.read` recounts: messages of the chat after the marker (which never moves back), sent by
  others, not deleted, as they are at that event. A deletion lowers no count until then.
- edits and deletions find the message by id alone, and only while it is not deleted.
- `chat.created` writes its founders only with a new chat row; the first of two founders with the
  same user wins.

A fold sees only the events given to it. The loader may fold the messages of different partitions
in different processes (a chat's events are all in its one partition): `MessagesFold.chat_ids` and
`strangers` let it check afterwards that no event needed what another fold held.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right, insort
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from projections.model import Params, Projection

Row = tuple[object, ...]


@dataclass(frozen=True)
class TableRows:
    table: str
    columns: tuple[str, ...]
    rows: Iterable[Row]


class Fold(Protocol):
    def apply(self, params: Params) -> None:
        """One event's statement parameters, in log order."""

    def rows(self) -> list[TableRows]:
        """The final rows, table by table, in an order the tables' keys allow (referenced first)."""


def fingerprint(statement: str) -> str:
    return hashlib.sha256(statement.encode()).hexdigest()


MODELLED = {
    "messages": "2943a2841912b56e7363d7e4b1bbc45a724ebf5886e61c41728c5ae900723be5",
    "users": "5f71acf3d5920988c185bbca6b684fb856a30ef025d336e021801f7bc0cd997d",
    "chats": "5c84e425eaa3ced0bd21c6149d495c0f8aba86d2fc7225658c8836bf493d1c93",
}
"""The sha256 of the statement each fold was written for (`fingerprint`). A change of the statement
makes `tests/unit/test_folds.py` fail until the fold is checked against it and this updated."""


# --- messages --------------------------------------------------------------------------------------


class ChatMessages:
    """What the messages projection holds of one chat. Users are keyed by `UUID.int`: a UUID's own
    hash and equality are Python code, an int's are not, and the fold does little else."""

    __slots__ = ("activity", "id", "live", "live_by", "markers", "seqs")

    def __init__(self, chat_id: UUID) -> None:
        self.id = chat_id
        self.seqs: set[int] = set()
        """Every stored message's seq, deleted or not: (chat_id, seq) is unique."""
        self.live: list[int] = []
        """The seqs of the messages not deleted, sorted."""
        self.live_by: dict[int, list[int]] = {}
        """The same, by sender."""
        self.activity: tuple[int, UUID, datetime] | None = None
        """last_seq, last_message_id, last_activity_at."""
        self.markers: dict[int, list[Any]] = {}
        """user -> [user_id, seq, unread_count, updated_at]."""

    def add_live(self, seq: int, sender: int) -> None:
        add_sorted(self.live, seq)
        own = self.live_by.get(sender)
        if own is None:
            self.live_by[sender] = [seq]
        else:
            add_sorted(own, seq)

    def drop_live(self, seq: int, sender: int) -> None:
        drop_sorted(self.live, seq)
        drop_sorted(self.live_by[sender], seq)

    def unread_after(self, seq: int, user: int) -> int:
        """Messages not deleted after `seq`, sent by others than `user`."""
        live = self.live
        count = len(live) - bisect_right(live, seq)
        own = self.live_by.get(user)
        if own:
            count -= len(own) - bisect_right(own, seq)
        return count


def add_sorted(values: list[int], value: int) -> None:
    if not values or value > values[-1]:
        values.append(value)
    else:
        insort(values, value)


def drop_sorted(values: list[int], value: int) -> None:
    del values[bisect_right(values, value) - 1]


MESSAGE_COLUMNS = ("id", "chat_id", "seq", "sender_id", "text", "client_msg_id", "created_at", "edited_at", "deleted")
ID, CHAT, SEQ, SENDER, TEXT, CLIENT_MSG_ID, CREATED_AT, EDITED_AT, DELETED = range(len(MESSAGE_COLUMNS))


class MessagesFold:
    """`projections.messages.STATEMENT`, one event at a time, in memory."""

    def __init__(self) -> None:
        self.messages: dict[int, list[Any]] = {}
        """id -> the row, in `MESSAGE_COLUMNS` order."""
        self.chats: dict[int, ChatMessages] = {}
        self.unknown_targets = 0

    def chat(self, chat_id: UUID) -> ChatMessages:
        chat = self.chats.get(chat_id.int)
        if chat is None:
            chat = self.chats[chat_id.int] = ChatMessages(chat_id)
        return chat

    def apply(self, params: Params) -> None:
        handler = HANDLERS.get(params[0])  # type: ignore[call-overload]
        if handler is not None:
            handler(self, params)

    def sent(self, params: Any) -> None:
        _, chat_id, message_id, seq, sender, text, client_msg_id, recipients, at = params
        messages = self.messages
        if message_id.int in messages:
            return
        chat = self.chat(chat_id)
        if seq in chat.seqs:
            return
        chat.seqs.add(seq)
        messages[message_id.int] = [message_id, chat.id, seq, sender, text, client_msg_id, at, None, False]
        own_key = sender.int
        chat.add_live(seq, own_key)
        if chat.activity is None or seq > chat.activity[0]:
            chat.activity = (seq, message_id, at)
        markers = chat.markers
        for key, user in {user.int: user for user in recipients}.items():
            if key != own_key:
                marker = markers.get(key)
                if marker is None:
                    markers[key] = [user, 0, 1, at]
                else:
                    marker[2] += 1
        own = markers.get(own_key)
        if own is None:
            markers[own_key] = [sender, seq, 0, at]
        else:
            own[1] = max(own[1], seq)
            own[2] = 0
            own[3] = at

    def edited(self, params: Any) -> None:
        row = self.target(params[2])
        if row is not None:
            row[TEXT] = params[5]
            row[EDITED_AT] = params[8]

    def deleted(self, params: Any) -> None:
        row = self.target(params[2])
        if row is not None:
            row[TEXT] = ""
            row[DELETED] = True
            self.chats[row[CHAT].int].drop_live(row[SEQ], row[SENDER].int)

    def target(self, message_id: UUID) -> list[Any] | None:
        """The row an edit or deletion changes: its message, unless deleted."""
        row = self.messages.get(message_id.int)
        if row is None:
            self.unknown_targets += 1
            return None
        return None if row[DELETED] else row

    def read(self, params: Any) -> None:
        _, chat_id, _, seq, user, _, _, _, at = params
        chat = self.chat(chat_id)
        key = user.int
        marker = chat.markers.get(key)
        if marker is None:
            chat.markers[key] = [user, seq, chat.unread_after(seq, key), at]
        else:
            moved = max(marker[1], seq)
            marker[1] = moved
            marker[2] = chat.unread_after(moved, key)
            marker[3] = at

    def rows(self) -> list[TableRows]:
        return [
            TableRows("messages", MESSAGE_COLUMNS, (tuple(row) for row in self.messages.values())),
            TableRows(
                "chat_activity",
                ("chat_id", "last_seq", "last_message_id", "last_activity_at"),
                ((chat.id, *chat.activity) for chat in self.chats.values() if chat.activity is not None),
            ),
            TableRows("read_markers", ("chat_id", "user_id", "seq", "unread_count", "updated_at"), self.marker_rows()),
        ]

    def marker_rows(self) -> Iterator[Row]:
        for chat in self.chats.values():
            for marker in chat.markers.values():
                yield (chat.id, *marker)

    def chat_ids(self) -> set[UUID]:
        """The chats whose rows this fold holds."""
        return {chat.id for chat in self.chats.values()}

    def strangers(self) -> int:
        """Edits and deletions of a message this fold does not hold: another fold may hold it."""
        return self.unknown_targets


HANDLERS: dict[str, Callable[[MessagesFold, Any], None]] = {
    "message.sent": MessagesFold.sent,
    "message.read": MessagesFold.read,
    "message.edited": MessagesFold.edited,
    "message.deleted": MessagesFold.deleted,
}


# --- users -----------------------------------------------------------------------------------------


class UsersFold:
    """`projections.users.STATEMENT`, one event at a time, in memory."""

    def __init__(self) -> None:
        self.users: dict[UUID, list[Any]] = {}
        """id -> [id, username, display_name, bio, created_at]."""
        self.holders: dict[object, UUID] = {}
        """username -> the id whose row holds it."""
        self.erased: dict[UUID, datetime] = {}
        """id -> when it was first erased."""
        self.legacy_hashes: dict[UUID, str] = {}
        """`user_credentials`: kept under its id when another registration takes the row over."""

    def apply(self, params: Any) -> None:
        kind, user_id, username, display_name, bio, password_hash, at = params
        if kind == "user.registered":
            self.registered(user_id, username, display_name, bio, password_hash, at)
        elif kind == "user.erased":
            if user_id not in self.erased:
                self.erased[user_id] = at
                self.legacy_hashes.pop(user_id, None)
                row = self.users.pop(user_id, None)
                if row is not None:
                    del self.holders[row[1]]
        elif kind == "user.profile_updated":
            row = self.users.get(user_id)
            if row is not None:
                if display_name is not None:
                    row[2] = display_name
                if bio is not None:
                    row[3] = bio

    def registered(
        self, user_id: UUID, username: object, display_name: Any, bio: Any, password_hash: Any, at: Any
    ) -> None:
        """A new row, or the row of the username taken over by a later registration (by
        `created_at`, then id); a registration applied again changes nothing."""
        holder = self.holders.get(username)
        if holder is not None:
            if (self.users[holder][4], holder) >= (at, user_id):
                return
            del self.users[holder]
        self.holders[username] = user_id
        self.users[user_id] = [user_id, username, display_name, bio or "", at]
        if password_hash is not None:
            self.legacy_hashes.setdefault(user_id, password_hash)

    def rows(self) -> list[TableRows]:
        return [
            TableRows(
                "users",
                ("id", "username", "display_name", "bio", "created_at"),
                (tuple(row[:5]) for row in self.users.values()),
            ),
            TableRows("user_credentials", ("user_id", "password_hash"), self.legacy_hashes.items()),
            TableRows("erased_accounts", ("user_id", "erased_at"), self.erased.items()),
        ]


# --- chats -----------------------------------------------------------------------------------------


class ChatsFold:
    """`projections.chats.STATEMENT`, one event at a time, in memory."""

    def __init__(self) -> None:
        self.chats: dict[UUID, Row] = {}
        """id -> (id, type, title, created_by, created_at)."""
        self.members: dict[tuple[UUID, UUID], list[Any]] = {}
        """(chat_id, user_id) -> [role, joined_at], in the order they were first written."""

    def apply(self, params: Any) -> None:
        kind, chat_id, chat_type, title, created_by, ids, roles, user_id, role, at = params
        members = self.members
        if kind == "chat.created":
            if chat_id in self.chats:
                return
            self.chats[chat_id] = (chat_id, chat_type, title, created_by, at)
            for founder, founder_role in zip(ids, roles, strict=True):
                members.setdefault((chat_id, founder), [founder_role, at])
        elif kind == "chat.member_added":
            member = members.get((chat_id, user_id))
            if member is None:
                members[(chat_id, user_id)] = [role, at]
            else:
                member[0] = role
        elif kind == "chat.member_removed":
            members.pop((chat_id, user_id), None)
        elif kind == "chat.role_changed":
            member = members.get((chat_id, user_id))
            if member is not None:
                member[0] = role

    def rows(self) -> list[TableRows]:
        return [
            TableRows("chats", ("id", "type", "title", "created_by", "created_at"), self.chats.values()),
            TableRows(
                "chat_members",
                ("chat_id", "user_id", "role", "joined_at"),
                ((chat_id, user_id, *m) for (chat_id, user_id), m in self.members.items()),
            ),
        ]


FOLDS: dict[str, Callable[[], Fold]] = {"messages": MessagesFold, "users": UsersFold, "chats": ChatsFold}


def fold_for(projection: Projection) -> Fold | None:
    """A new fold of `projection`, or None when no fold models its statement as it is now."""
    make = FOLDS.get(projection.name)
    if make is None or fingerprint(projection.statement) != MODELLED.get(projection.name):
        return None
    return make()
