"""Which data keys the chat rules shred (docs/erasure.md): every key a command brings is adopted by
its event or shredded, a superseded or deleted version's key is shredded, and a key the message
holds is never shredded, even by a command decided again after a crash."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from runtime.sealing import new_key, seal
from schemas.commands import Command, CreateChat, DeleteMessage, EditMessage, MarkRead, RemoveMember, SendMessage
from schemas.events import MessageEdited, MessageSent
from schemas.sealed import message_key_id
from streams.chat_rules import Decision, decide, evolve, message_id_for, shredded_in
from streams.shredding import key_id_of
from tests.memory_chat_store import MemoryChatStore

ALICE, BOB, CAROL = (uuid.uuid4() for _ in range(3))
CHAT_KEY = b"a test key of the direct chats' ids, 32+ bytes"


def sealed_command(actor: uuid.UUID, chat: uuid.UUID, *, cmid: str = "", edit: uuid.UUID | None = None) -> Command:
    """A send (or an edit of `edit`) whose text is sealed under a key of its own command."""
    command_id = uuid.uuid4()
    message = edit or message_id_for(chat, actor, cmid)
    key_id = message_key_id(message, command_id)
    token = seal(new_key(), key_id, "message", message, f"text of {command_id}")
    body: SendMessage | EditMessage = (
        EditMessage(chat_id=chat, message_id=edit, sealed_text=token)
        if edit
        else SendMessage(chat_id=chat, client_msg_id=cmid, sealed_text=token)
    )
    return Command(
        command_id=command_id,
        correlation_id=command_id.hex,
        actor_id=actor,
        reply_to=None,
        issued_at=datetime.now(UTC),
        body=body,
    )


def plain(actor: uuid.UUID, body: CreateChat | DeleteMessage | RemoveMember | MarkRead) -> Command:
    return Command(
        command_id=uuid.uuid4(),
        correlation_id="c",
        actor_id=actor,
        reply_to=None,
        issued_at=datetime.now(UTC),
        body=body,
    )


def run(store: MemoryChatStore, command: Command) -> Decision:
    return decide(store, command, chat_id_key=CHAT_KEY)


def brought(command: Command) -> str:
    body = command.body
    assert isinstance(body, (SendMessage, EditMessage))
    key_id = key_id_of(body.sealed_text)
    assert key_id is not None
    return key_id


@pytest.fixture
def chat() -> tuple[MemoryChatStore, uuid.UUID]:
    store = MemoryChatStore()
    chat_id = uuid.uuid4()
    assert run(store, plain(ALICE, CreateChat(chat_id=chat_id, type="group", title="t", member_ids=[BOB, CAROL]))).ok
    return store, chat_id


def test_a_send_adopts_its_key_and_its_event_carries_only_the_sealed_text(
    chat: tuple[MemoryChatStore, uuid.UUID],
) -> None:
    store, chat_id = chat
    send = sealed_command(BOB, chat_id, cmid="1")
    decision = run(store, send)
    assert decision.ok and decision.shredded == []
    [event] = decision.events
    assert isinstance(event.payload, MessageSent) and event.payload.text is None
    assert key_id_of(event.payload.sealed_text) == brought(send)
    stored = store.get_message(str(event.payload.message_id))
    assert stored is not None and key_id_of(stored.text) == brought(send)
    assert "text of" not in str(decision.result.model_dump()), "the reply carries the sealed text"


def test_an_edit_shreds_the_previous_version_and_a_delete_the_current(chat: tuple[MemoryChatStore, uuid.UUID]) -> None:
    store, chat_id = chat
    send = sealed_command(BOB, chat_id, cmid="1")
    message = run(store, send).events[0].payload
    assert isinstance(message, MessageSent)
    edit = sealed_command(BOB, chat_id, edit=message.message_id)
    edited = run(store, edit)
    assert edited.ok and edited.shredded == [brought(send)]
    again = sealed_command(BOB, chat_id, edit=message.message_id)
    assert run(store, again).shredded == [brought(edit)]
    deleted = run(store, plain(ALICE, DeleteMessage(chat_id=chat_id, message_id=message.message_id)))
    assert deleted.ok and deleted.shredded == [brought(again)]


def test_a_refused_command_shreds_the_key_it_brought(chat: tuple[MemoryChatStore, uuid.UUID]) -> None:
    store, chat_id = chat
    outsider = sealed_command(uuid.uuid4(), chat_id, cmid="1")
    refused = run(store, outsider)
    assert not refused.ok and refused.shredded == [brought(outsider)]
    message = run(store, sealed_command(BOB, chat_id, cmid="2")).events[0].payload
    assert isinstance(message, MessageSent)
    not_the_sender = sealed_command(CAROL, chat_id, edit=message.message_id)
    forbidden = run(store, not_the_sender)
    assert (forbidden.code, forbidden.shredded) == ("forbidden", [brought(not_the_sender)])


def test_a_repeated_send_shreds_its_own_key_but_not_the_first(chat: tuple[MemoryChatStore, uuid.UUID]) -> None:
    store, chat_id = chat
    first = sealed_command(BOB, chat_id, cmid="same")
    assert run(store, first).ok
    retry = sealed_command(BOB, chat_id, cmid="same")
    repeated = run(store, retry)
    assert repeated.duplicate and repeated.shredded == [brought(retry)]
    assert run(store, first).shredded == [], "the same command decided again keeps its key"


def test_a_send_decided_again_after_its_sender_left_keeps_the_messages_key(
    chat: tuple[MemoryChatStore, uuid.UUID],
) -> None:
    """Crash recovery: the send and the removal both landed, the catch-up replayed both, and the
    send is decided again: refused now, but its key is the message's."""
    store, chat_id = chat
    send = sealed_command(BOB, chat_id, cmid="1")
    assert run(store, send).ok
    assert run(store, plain(BOB, RemoveMember(chat_id=chat_id, user_id=BOB))).ok
    again = run(store, send)
    assert not again.ok and again.shredded == []


def test_an_edit_decided_again_does_not_shred_its_own_key(chat: tuple[MemoryChatStore, uuid.UUID]) -> None:
    store, chat_id = chat
    message = run(store, sealed_command(BOB, chat_id, cmid="1")).events[0].payload
    assert isinstance(message, MessageSent)
    edit = sealed_command(BOB, chat_id, edit=message.message_id)
    run(store, edit)
    assert run(store, edit).shredded == []


def test_the_catch_up_finds_the_same_keys_in_the_events(chat: tuple[MemoryChatStore, uuid.UUID]) -> None:
    """What a replay of the log gives again (`shredded_in` before `evolve`), event by event."""
    store, chat_id = chat
    replica = MemoryChatStore()
    replica.chats = dict(store.chats)
    send = sealed_command(BOB, chat_id, cmid="1")
    sent = run(store, send)
    message = sent.events[0].payload
    assert isinstance(message, MessageSent)
    edited = run(store, sealed_command(BOB, chat_id, edit=message.message_id))
    deleted = run(store, plain(BOB, DeleteMessage(chat_id=chat_id, message_id=message.message_id)))

    replayed = []
    for event in [*sent.events, *edited.events, *deleted.events]:
        replayed += shredded_in(replica, event)
        evolve(replica, event)
    second = edited.events[0].payload
    assert isinstance(second, MessageEdited)
    assert replayed == [*edited.shredded, *deleted.shredded] == [brought(send), key_id_of(second.sealed_text)]


def test_plain_commands_shred_nothing(chat: tuple[MemoryChatStore, uuid.UUID]) -> None:
    store, chat_id = chat
    sent = run(store, plain(BOB, MarkRead(chat_id=chat_id, seq=0)))
    plain_send = Command(
        command_id=uuid.uuid4(), correlation_id="c", actor_id=BOB, reply_to=None, issued_at=datetime.now(UTC),
        body=SendMessage(chat_id=chat_id, client_msg_id="p", text="plain"),
    )  # fmt: skip
    decision = run(store, plain_send)
    message = decision.events[0].payload
    assert isinstance(message, MessageSent)
    edit = Command(
        command_id=uuid.uuid4(), correlation_id="c", actor_id=BOB, reply_to=None, issued_at=datetime.now(UTC),
        body=EditMessage(chat_id=chat_id, message_id=message.message_id, text="plain again"),
    )  # fmt: skip
    edited = run(store, edit)
    assert isinstance(edited.events[0].payload, MessageEdited)
    assert sent.shredded == decision.shredded == edited.shredded == []
