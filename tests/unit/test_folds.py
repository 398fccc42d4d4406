"""The folds of the bulk loader: the rows each projection's statement leaves, computed in memory.

Each case is worked out by hand from the statement; `tests/integration/test_bulk_load.py` compares
the folds with PostgreSQL running the statements on a large mixed log.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest

from projections.apply import Skipped
from projections.chats import CHATS
from projections.decoding import params_of
from projections.folds import MODELLED, ChatsFold, Fold, MessagesFold, UsersFold, fingerprint, fold_for
from projections.messages import MESSAGES
from projections.model import Projection
from projections.users import USERS
from schemas import topics
from schemas.events import ChatCreated, MemberAdded, MessageSent
from schemas.models import Member
from tests.integration.test_projections_workload import T0, EventLog


def folded(log: EventLog, projection: Projection) -> Any:
    fold = fold_for(projection)
    assert fold is not None
    for record in log.records(projection.topic):
        params = params_of(projection, record)
        assert not isinstance(params, Skipped), params
        fold.apply(params)
    return fold


def table(fold: Fold, name: str, *key: str) -> dict[Any, dict[str, Any]]:
    [rows] = [t for t in fold.rows() if t.table == name]
    result = {}
    for row in rows.rows:
        values = dict(zip(rows.columns, row, strict=True))
        result[tuple(values[k] for k in key) if len(key) > 1 else values[key[0]]] = values
    return result


def at(event_number: int) -> datetime:
    """The time of the log's `event_number`-th event (1-based): one millisecond apart."""
    return T0 + timedelta(milliseconds=event_number)


def markers(fold: MessagesFold, chat: uuid.UUID) -> dict[uuid.UUID, tuple[int, int]]:
    """user -> (seq, unread_count) of the chat."""
    rows = table(fold, "read_markers", "chat_id", "user_id")
    return {user: (r["seq"], r["unread_count"]) for (c, user), r in rows.items() if c == chat}


class Room:
    """A log with three users (ann, bob, cid) in one group chat."""

    def __init__(self) -> None:
        self.log = EventLog(seed=1)
        self.ann, self.bob, self.cid = (self.log.register(n) for n in ("ann", "bob", "cid"))
        self.chat = self.log.create_chat(self.ann, [self.bob, self.cid], title="room")

    def messages(self) -> MessagesFold:
        fold: MessagesFold = folded(self.log, MESSAGES)
        return fold


def test_unread_counts_grow_per_message_of_others_and_are_recounted_at_each_read() -> None:
    room = Room()
    log, chat, ann, bob, cid = room.log, room.chat, room.ann, room.bob, room.cid
    log.send(chat, ann, "1")
    log.send(chat, ann, "2")
    log.read(chat, bob, 1)
    log.send(chat, ann, "3")
    log.delete(chat, 2)
    log.send(chat, ann, "4")
    fold = room.messages()
    assert markers(fold, chat) == {ann: (4, 0), bob: (1, 3), cid: (0, 4)}, "a deletion lowers no count"

    log.read(chat, bob, 0)
    assert markers(room.messages(), chat)[bob] == (1, 2), "the marker stays; 3 and 4 are counted, 2 is deleted"
    log.send(chat, bob, "5")
    log.read(chat, cid, 2)
    fold = room.messages()
    assert markers(fold, chat) == {ann: (4, 1), bob: (5, 0), cid: (2, 3)}, "never back; recount without deleted"


def test_the_senders_marker_moves_to_its_message_and_never_back() -> None:
    room = Room()
    log, chat, ann, bob = room.log, room.chat, room.ann, room.bob
    log.send(chat, bob, "1")
    log.send(chat, bob, "2")
    log.read(chat, ann, 2)
    log.add(
        topics.MESSAGE_EVENTS,
        chat,
        MessageSent(
            message_id=log.new_id(),
            chat_id=chat,
            seq=1_000,
            sender_id=ann,
            text="far ahead",
            client_msg_id="x",
            recipients=[bob, bob],
        ),
    )
    log.read(chat, ann, 500)
    log.add(
        topics.MESSAGE_EVENTS,
        chat,
        MessageSent(
            message_id=log.new_id(),
            chat_id=chat,
            seq=3,
            sender_id=ann,
            text="behind",
            client_msg_id="y",
            recipients=[bob],
        ),
    )
    fold = room.messages()
    rows = table(fold, "read_markers", "chat_id", "user_id")
    assert (rows[(chat, ann)]["seq"], rows[(chat, ann)]["unread_count"]) == (1_000, 0)
    assert rows[(chat, ann)]["updated_at"] == at(len(log.entries)), "its own message sets updated_at"
    assert (rows[(chat, bob)]["seq"], rows[(chat, bob)]["unread_count"]) == (2, 2)
    assert (rows[(chat, room.cid)]["seq"], rows[(chat, room.cid)]["unread_count"]) == (0, 2), "not a recipient"
    activity = table(fold, "chat_activity", "chat_id")[chat]
    assert activity["last_seq"] == 1_000 and activity["last_activity_at"] == at(len(log.entries) - 2)


def test_a_repeated_or_conflicting_message_changes_nothing() -> None:
    room = Room()
    log, chat, ann, bob = room.log, room.chat, room.ann, room.bob
    first, _ = log.send(chat, ann, "1")
    log.entries.append(log.entries[-1])
    log.add(
        topics.MESSAGE_EVENTS,
        chat,
        MessageSent(
            message_id=log.new_id(), chat_id=chat, seq=1, sender_id=bob, text="same seq", client_msg_id="z",
            recipients=[ann, bob],
        ),
    )  # fmt: skip
    other = log.create_chat(bob, [ann])
    log.add(
        topics.MESSAGE_EVENTS,
        other,
        MessageSent(
            message_id=first, chat_id=other, seq=1, sender_id=bob, text="same id", client_msg_id="z",
            recipients=[ann, bob],
        ),
    )  # fmt: skip
    fold = room.messages()
    assert list(table(fold, "messages", "id")) == [first]
    assert markers(fold, chat) == {ann: (1, 0), bob: (0, 1), room.cid: (0, 1)}
    assert markers(fold, other) == {}
    assert list(table(fold, "chat_activity", "chat_id")) == [chat]


def test_edits_and_deletions_change_only_messages_not_deleted() -> None:
    room = Room()
    log, chat, ann = room.log, room.chat, room.ann
    kept, _ = log.send(chat, ann, "kept")
    gone, _ = log.send(chat, ann, "gone")
    log.edit(chat, 1, "kept, edited")
    edited_at = at(len(log.entries))
    log.edit(chat, 2, "gone, edited")
    gone_edited_at = at(len(log.entries))
    log.delete(chat, 2)
    log.chats[chat].messages[2] = (gone, ann)
    log.edit(chat, 2, "after the deletion")
    log.delete(chat, 2)
    fold = room.messages()
    rows = table(fold, "messages", "id")
    assert (rows[kept]["text"], rows[kept]["edited_at"], rows[kept]["deleted"]) == ("kept, edited", edited_at, False)
    assert (rows[gone]["text"], rows[gone]["edited_at"], rows[gone]["deleted"]) == ("", gone_edited_at, True)
    assert fold.strangers() == 0


def test_an_edit_of_a_message_the_fold_does_not_hold_is_counted_as_a_stranger() -> None:
    room = Room()
    log, chat = room.log, room.chat
    log.send(chat, room.ann, "1")
    del log.entries[-1]
    log.edit(chat, 1, "edited")
    fold = room.messages()
    assert table(fold, "messages", "id") == {}
    assert fold.strangers() == 1 and fold.chat_ids() == set()


def test_a_read_before_any_message_makes_a_marker_with_nothing_unread() -> None:
    room = Room()
    room.log.read(room.chat, room.cid, 7)
    fold = room.messages()
    assert markers(fold, room.chat) == {room.cid: (7, 0)}
    assert fold.chat_ids() == {room.chat}


def test_users_a_later_registration_takes_a_name_over_a_repeat_changes_nothing_profiles_set_what_they_carry() -> None:
    log = EventLog(seed=2)
    early = log.new_id()
    log.update_profile(early, display_name="Too early")
    ann = log.register("ann")
    other = log.register("ann", "Another Ann")  # later: the name is the other's now (ann was erased)
    log.entries.append(log.entries[-2])  # ann's registration again, earlier than the holder's: nothing
    log.entries.append(log.entries[-2])  # the other's again: nothing
    log.update_profile(ann, bio="hello")  # no row of ann's any more
    log.update_profile(other, display_name="Annie")
    fold = folded(log, USERS)
    assert table(fold, "users", "id") == {
        other: {"id": other, "username": "ann", "display_name": "Annie", "bio": "", "created_at": at(3)}
    }
    hashed = "$argon2id$v=19$m=65536,t=3,p=4$ann"
    assert table(fold, "user_credentials", "user_id") == {
        ann: {"user_id": ann, "password_hash": hashed},
        other: {"user_id": other, "password_hash": hashed},
    }, "the legacy hash of the row taken over stays under its id until that user's erasure"
    assert isinstance(fold, UsersFold)


def test_users_an_erasure_frees_the_name_and_forgets_the_legacy_hash_in_any_order() -> None:
    for erased_first in (True, False):
        log = EventLog(seed=5)
        ann = log.register("ann")
        if erased_first:
            log.erase(ann)
        other = log.register("ann", "Another Ann")
        if not erased_first:
            log.erase(ann)
        fold = folded(log, USERS)
        assert set(table(fold, "users", "id")) == {other}
        assert set(table(fold, "user_credentials", "user_id")) == {other}
        assert set(table(fold, "erased_accounts", "user_id")) == {ann}


def test_chats_founders_come_only_with_a_new_chat_and_the_first_of_a_user_wins() -> None:
    log = EventLog(seed=3)
    ann, bob, cid = (log.register(n) for n in ("ann", "bob", "cid"))
    chat = log.new_id()
    log.add(topics.CHAT_EVENTS, chat, MemberAdded(chat_id=chat, user_id=cid, role="admin", added_by=ann))
    created = ChatCreated(
        chat_id=chat,
        type="group",
        title="t",
        created_by=ann,
        members=[
            Member(user_id=ann, role="owner"),
            Member(user_id=bob, role="member"),
            Member(user_id=bob, role="admin"),
            Member(user_id=cid, role="member"),
        ],
    )
    log.add(topics.CHAT_EVENTS, chat, created)
    log.entries.append(log.entries[-1])
    fold = folded(log, CHATS)
    members = table(fold, "chat_members", "chat_id", "user_id")
    assert {u: (m["role"], m["joined_at"]) for (_, u), m in members.items()} == {
        cid: ("admin", at(4)),
        ann: ("owner", at(5)),
        bob: ("member", at(5)),
    }
    assert table(fold, "chats", "id")[chat]["created_at"] == at(5)
    assert isinstance(fold, ChatsFold)


def test_chats_members_added_removed_and_their_roles() -> None:
    log = EventLog(seed=4)
    ann, bob, cid, dan = (log.register(n) for n in ("ann", "bob", "cid", "dan"))
    chat = log.create_chat(ann, [bob], title="t")
    log.add_member(chat, cid, "member")
    log.add_member(chat, cid, "admin")
    log.remove_member(chat, bob)
    log.change_role(chat, cid, "member")
    log.chats[chat].members[dan] = "member"
    log.change_role(chat, dan, "admin")
    log.entries.append(log.entries[4])  # chat.created again: bob stays removed
    fold = folded(log, CHATS)
    members = table(fold, "chat_members", "chat_id", "user_id")
    assert {u: (m["role"], m["joined_at"]) for (_, u), m in members.items()} == {
        ann: ("owner", at(5)),
        cid: ("member", at(6)),
    }


@pytest.mark.parametrize("projection", [MESSAGES, USERS, CHATS], ids=lambda p: p.name)
def test_each_fold_models_the_statement_as_it_is(projection: Projection) -> None:
    """When this fails, the statement changed: check the fold against it (and its integration
    test), then write the new fingerprint into `MODELLED`. Until then the loader uses the statement."""
    assert fingerprint(projection.statement) == MODELLED[projection.name]
    assert fold_for(projection) is not None


def test_a_changed_statement_has_no_fold() -> None:
    changed = dataclasses.replace(MESSAGES, statement=MESSAGES.statement.replace("NOT deleted", "true"))
    assert fold_for(changed) is None
    assert fold_for(dataclasses.replace(MESSAGES, name="elsewhere")) is None
