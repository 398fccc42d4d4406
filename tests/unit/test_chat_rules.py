"""The rules of chats and messages, decided against a dict store (no Kafka, no Faust)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas import codec
from schemas.commands import (
    AddMember,
    Body,
    Command,
    CreateChat,
    DeleteMessage,
    EditMessage,
    MarkRead,
    Origin,
    RemoveMember,
    SendMessage,
)
from schemas.models import direct_chat_id
from streams.chat_rules import Decision, decide, evolve
from streams.chat_state import ChatState
from tests.memory_chat_store import MemoryChatStore

ALICE, BOB, CAROL, DAVE = (uuid.uuid4() for _ in range(4))
KEY = b"a test key of the direct chats' ids, 32+ bytes"


def wire(decision: Decision) -> dict[str, Any]:
    """A decision's result as its reply carries it."""
    return decision.result.model_dump(mode="json")


def command(actor: uuid.UUID, body: Any, origin: Origin | None = None) -> Command:
    return Command(
        command_id=uuid.uuid4(),
        correlation_id=uuid.uuid4().hex,
        actor_id=actor,
        reply_to=None,
        issued_at=datetime.now(UTC),
        origin=origin,
        body=body,
    )


def run(store: MemoryChatStore, actor: uuid.UUID, body: Body, origin: Origin | None = None) -> Decision:
    return decide(store, command(actor, body, origin), chat_id_key=KEY)


@pytest.fixture
def group() -> tuple[MemoryChatStore, uuid.UUID]:
    store = MemoryChatStore()
    chat_id = uuid.uuid4()
    assert run(store, ALICE, CreateChat(chat_id=chat_id, type="group", title="t", member_ids=[BOB, CAROL])).ok
    return store, chat_id


def chat_of(store: MemoryChatStore, chat_id: uuid.UUID) -> ChatState:
    chat = store.get_chat(str(chat_id))
    assert chat is not None
    return chat


def send(store: MemoryChatStore, chat_id: uuid.UUID, actor: uuid.UUID, cmid: str, text: str = "hi") -> Decision:
    return run(store, actor, SendMessage(chat_id=chat_id, client_msg_id=cmid, text=text))


def test_group_creator_is_owner_and_everyone_is_told(group: tuple[MemoryChatStore, uuid.UUID]) -> None:
    store, chat_id = group
    assert chat_of(store, chat_id).members == {str(ALICE): "owner", str(BOB): "member", str(CAROL): "member"}


def test_direct_chat_is_one_per_pair() -> None:
    store = MemoryChatStore()
    chat_id = direct_chat_id(KEY, ALICE, BOB)
    first = run(store, ALICE, CreateChat(chat_id=chat_id, type="direct", member_ids=[BOB]))
    again = run(store, BOB, CreateChat(chat_id=chat_id, type="direct", member_ids=[ALICE]))
    assert first.ok and not first.duplicate and len(first.events) == 1
    assert again.ok and again.duplicate and again.events == []
    assert wire(again)["chat"]["id"] == str(chat_id)


def test_direct_chat_needs_exactly_one_other_and_its_derived_id() -> None:
    store = MemoryChatStore()
    assert (
        run(store, ALICE, CreateChat(chat_id=uuid.uuid4(), type="direct", member_ids=[BOB])).code == "invalid_request"
    )
    other_key = direct_chat_id(b"another deployment's key, 32+ bytes", ALICE, BOB)
    assert run(store, ALICE, CreateChat(chat_id=other_key, type="direct", member_ids=[BOB])).code == "invalid_request"
    wrong = run(
        store, ALICE, CreateChat(chat_id=direct_chat_id(KEY, ALICE, BOB), type="direct", member_ids=[BOB, CAROL])
    )
    assert wrong.code == "invalid_request"


def test_seq_is_gapless_and_sends_are_idempotent(group: tuple[MemoryChatStore, uuid.UUID]) -> None:
    store, chat_id = group
    seqs = [wire(send(store, chat_id, BOB, f"m{i}"))["message"]["seq"] for i in range(5)]
    retry = send(store, chat_id, BOB, "m2", text="changed")
    assert seqs == [1, 2, 3, 4, 5]
    assert retry.duplicate and retry.events == []
    assert wire(retry)["message"]["seq"] == 3 and wire(retry)["message"]["text"] == "hi"
    redelivered = {str(d.recipient_id) for d in retry.deliveries if d.frame["message"]["seq"] == 3}
    assert redelivered == set(chat_of(store, chat_id).members), (
        "a repeat delivers the first message again: the first decision may have died before its deliveries left"
    )
    assert wire(send(store, chat_id, CAROL, "m2"))["message"]["seq"] == 6  # same id, other sender


def test_non_member_can_neither_write_nor_read_marks(group: tuple[MemoryChatStore, uuid.UUID]) -> None:
    store, chat_id = group
    assert send(store, chat_id, DAVE, "x").code == "not_found"
    assert run(store, DAVE, MarkRead(chat_id=chat_id, seq=1)).code == "not_found"
    assert send(store, uuid.uuid4(), ALICE, "x").code == "not_found"


def test_sent_message_reaches_every_member_and_skips_the_sending_socket(
    group: tuple[MemoryChatStore, uuid.UUID],
) -> None:
    store, chat_id = group
    decision = run(
        store,
        BOB,
        SendMessage(chat_id=chat_id, client_msg_id="a", text="yo"),
        Origin(instance_id="g1", connection_id="c1"),
    )
    by_user = {str(d.recipient_id): d for d in decision.deliveries}
    assert set(by_user) == {str(ALICE), str(BOB), str(CAROL)}
    assert by_user[str(BOB)].skip_connection == "c1" and by_user[str(ALICE)].skip_connection is None
    assert by_user[str(ALICE)].frame["type"] == "message.new"
    assert sorted(decision.events[0].payload.recipients, key=str) == sorted([ALICE, BOB, CAROL], key=str)  # type: ignore[attr-defined]


def test_only_managers_add_members_and_only_to_groups(group: tuple[MemoryChatStore, uuid.UUID]) -> None:
    store, chat_id = group
    assert run(store, BOB, AddMember(chat_id=chat_id, user_id=DAVE)).code == "forbidden"
    added = run(store, ALICE, AddMember(chat_id=chat_id, user_id=DAVE))
    assert added.ok and str(DAVE) in wire(added)["chat"]["members"][3]["user_id"]
    assert run(store, ALICE, AddMember(chat_id=chat_id, user_id=DAVE)).duplicate
    direct = direct_chat_id(KEY, ALICE, BOB)
    run(store, ALICE, CreateChat(chat_id=direct, type="direct", member_ids=[BOB]))
    assert run(store, ALICE, AddMember(chat_id=direct, user_id=CAROL)).code == "forbidden"


def test_removal_rules_and_ownership_passes_on(group: tuple[MemoryChatStore, uuid.UUID]) -> None:
    store, chat_id = group
    assert run(store, BOB, RemoveMember(chat_id=chat_id, user_id=CAROL)).code == "forbidden"
    assert run(store, BOB, RemoveMember(chat_id=chat_id, user_id=ALICE)).code == "forbidden"
    assert run(store, CAROL, RemoveMember(chat_id=chat_id, user_id=CAROL)).ok  # leaving
    left = run(store, ALICE, RemoveMember(chat_id=chat_id, user_id=ALICE))
    assert left.ok and [e.type for e in left.events] == ["chat.member_removed", "chat.role_changed"]
    assert chat_of(store, chat_id).members == {str(BOB): "owner"}
    assert {d.recipient_id for d in left.deliveries} == {str(ALICE), str(BOB)}


def test_edit_by_sender_only_and_delete_by_sender_or_manager(group: tuple[MemoryChatStore, uuid.UUID]) -> None:
    store, chat_id = group
    message_id = uuid.UUID(wire(send(store, chat_id, BOB, "a"))["message"]["id"])
    assert run(store, ALICE, EditMessage(chat_id=chat_id, message_id=message_id, text="x")).code == "forbidden"
    edited = run(store, BOB, EditMessage(chat_id=chat_id, message_id=message_id, text="better"))
    assert wire(edited)["message"]["text"] == "better" and wire(edited)["message"]["edited_at"]
    assert run(store, CAROL, DeleteMessage(chat_id=chat_id, message_id=message_id)).code == "forbidden"
    deleted = run(store, ALICE, DeleteMessage(chat_id=chat_id, message_id=message_id))
    assert deleted.ok and wire(deleted) == {"chat_id": str(chat_id), "message_id": str(message_id), "seq": 1}
    assert run(store, BOB, EditMessage(chat_id=chat_id, message_id=message_id, text="y")).code == "not_found"
    stored = store.get_message(str(message_id))
    assert stored is not None and stored.text == "" and stored.deleted


def test_read_marker_is_clamped_to_the_last_message(group: tuple[MemoryChatStore, uuid.UUID]) -> None:
    store, chat_id = group
    send(store, chat_id, BOB, "a")
    decision = run(store, ALICE, MarkRead(chat_id=chat_id, seq=99))
    assert wire(decision) == {"chat_id": str(chat_id), "seq": 1}
    assert {d.frame["type"] for d in decision.deliveries} == {"read"}


def test_evolve_is_idempotent_so_replaying_a_tail_is_safe(group: tuple[MemoryChatStore, uuid.UUID]) -> None:
    store, chat_id = group
    decisions = [send(store, chat_id, BOB, f"m{i}") for i in range(3)]
    before = (dict(store.chats), dict(store.messages))
    for decision in decisions:
        for event in decision.events:
            evolve(store, event)
    assert (store.chats, store.messages) == before


def test_replaying_events_on_fresh_state_gives_the_same_state(group: tuple[MemoryChatStore, uuid.UUID]) -> None:
    _, chat_id = group
    events = []
    fresh = MemoryChatStore()
    replay_source = MemoryChatStore()
    creation = run(replay_source, ALICE, CreateChat(chat_id=chat_id, type="group", title="t", member_ids=[BOB]))
    events += creation.events
    events += send(replay_source, chat_id, BOB, "a").events
    events += run(replay_source, ALICE, AddMember(chat_id=chat_id, user_id=CAROL)).events
    for event in events:
        evolve(fresh, event)
    assert (fresh.chats, fresh.messages) == (replay_source.chats, replay_source.messages)


def test_replaying_a_tail_mends_state_that_a_crash_left_half_written(group: tuple[MemoryChatStore, uuid.UUID]) -> None:
    """The chat's last_seq reached its changelog, the message did not: the replayed event must
    restore it, or a retry of the send would be a second message."""
    store, chat_id = group
    decision = send(store, chat_id, BOB, "a")
    store.messages.clear()
    for event in decision.events:
        evolve(store, event)
    retry = send(store, chat_id, BOB, "a")
    assert retry.duplicate and retry.events == []
    assert chat_of(store, chat_id).last_seq == 1


# --- group size and membership deltas (contract v1.1, "Group size") ------------------------------


def frames_by_user(decision: Decision) -> dict[uuid.UUID, list[dict[str, Any]]]:
    frames: dict[uuid.UUID, list[dict[str, Any]]] = {}
    for d in decision.deliveries:
        frames.setdefault(uuid.UUID(d.recipient_id), []).append(d.frame)
    return frames


def test_an_add_tells_the_members_by_a_delta_and_the_added_the_whole_chat(
    group: tuple[MemoryChatStore, uuid.UUID],
) -> None:
    store, chat_id = group
    frames = frames_by_user(run(store, ALICE, AddMember(chat_id=chat_id, user_id=DAVE)))
    delta = {"type": "chat.member_added", "chat_id": str(chat_id), "user_id": str(DAVE), "role": "member"}
    assert frames[ALICE] == frames[BOB] == frames[CAROL] == [delta]
    [updated] = frames[DAVE]
    assert updated["type"] == "chat.updated" and len(updated["chat"]["members"]) == 4


def test_a_removal_tells_everyone_and_the_removed_by_a_delta(group: tuple[MemoryChatStore, uuid.UUID]) -> None:
    store, chat_id = group
    frames = frames_by_user(run(store, ALICE, RemoveMember(chat_id=chat_id, user_id=CAROL)))
    delta = {"type": "chat.member_removed", "chat_id": str(chat_id), "user_id": str(CAROL)}
    assert frames == {ALICE: [delta], BOB: [delta], CAROL: [delta]}


def test_an_owner_who_leaves_passes_ownership_on_by_a_delta(group: tuple[MemoryChatStore, uuid.UUID]) -> None:
    store, chat_id = group
    frames = frames_by_user(run(store, ALICE, RemoveMember(chat_id=chat_id, user_id=ALICE)))
    [successor] = [u for u, role in chat_of(store, chat_id).members.items() if role == "owner"]
    removed = {"type": "chat.member_removed", "chat_id": str(chat_id), "user_id": str(ALICE)}
    owner = {"type": "chat.member_added", "chat_id": str(chat_id), "user_id": successor, "role": "owner"}
    assert frames == {ALICE: [removed], BOB: [removed, owner], CAROL: [removed, owner]}


def test_a_group_holds_at_most_the_limit_its_creator_included() -> None:
    store = MemoryChatStore()
    others = [uuid.uuid4() for _ in range(4)]
    too_many = decide(
        store,
        command(ALICE, CreateChat(chat_id=uuid.uuid4(), type="group", member_ids=others)),
        chat_id_key=KEY,
        max_group_members=4,
    )
    assert (too_many.ok, too_many.code, too_many.events, too_many.deliveries) == (False, "group_full", [], [])
    chat_id = uuid.uuid4()
    assert decide(
        store,
        command(ALICE, CreateChat(chat_id=chat_id, type="group", member_ids=others[:3])),
        chat_id_key=KEY,
        max_group_members=4,
    ).ok
    full = decide(store, command(ALICE, AddMember(chat_id=chat_id, user_id=DAVE)), chat_id_key=KEY, max_group_members=4)
    assert (full.code, full.events, full.deliveries) == ("group_full", [], [])
    again = decide(
        store, command(ALICE, AddMember(chat_id=chat_id, user_id=others[0])), chat_id_key=KEY, max_group_members=4
    )
    assert again.ok and again.duplicate, "adding a member already there is no growth"


def test_the_bytes_of_one_add_grow_linearly_with_the_group() -> None:
    """Before v1.1 every member got the whole member list: bytes(500) / bytes(50) was about 100."""

    def bytes_of_one_add(size: int) -> int:
        store = MemoryChatStore()
        chat_id = uuid.uuid4()
        create = CreateChat(chat_id=chat_id, type="group", member_ids=[uuid.uuid4() for _ in range(size - 1)])
        assert run(store, ALICE, create).ok
        added = run(store, ALICE, AddMember(chat_id=chat_id, user_id=uuid.uuid4()))
        return sum(len(codec.dumps(d.frame)) for d in added.deliveries)

    small, large = bytes_of_one_add(50), bytes_of_one_add(500)
    assert large / small < 12, (small, large)
