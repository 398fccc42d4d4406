"""The rules of an account's erasure (docs/erasure.md): the user agent's quarantine of the name and
`user.erased`, the chat agent's `chat.erase_member`; decided against dicts (no Kafka, no Faust)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from schemas.commands import Body, Command, CreateChat, EraseAccount, EraseMember, Register, SendMessage
from schemas.events import MemberRemoved, MessageDeleted, UserErased
from schemas.models import direct_chat_id
from schemas.sealed import profile_key_id
from streams import chat_rules, user_rules
from streams.decision import Decision
from streams.user_rules import Claim
from tests.memory_chat_store import MemoryChatStore
from tests.unit.test_user_rules import Names

ALICE, BOB, CAROL = (uuid.uuid4() for _ in range(3))
KEY = b"a test key of the direct chats' ids, 32+ bytes"
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
QUARANTINE = timedelta(days=30)


def command(actor: uuid.UUID | None, body: Body, command_id: uuid.UUID | None = None) -> Command:
    return Command(
        command_id=command_id or uuid.uuid4(),
        correlation_id="c",
        actor_id=actor,
        reply_to=None,
        issued_at=NOW,
        body=body,
    )


def user_decision(names: Names, actor: uuid.UUID | None, body: Body, at: datetime = NOW) -> Decision:
    return user_rules.decide(names, command(actor, body), at, QUARANTINE)


def register(user_id: uuid.UUID, name: str) -> Register:
    return Register(user_id=user_id, username=name, display_name=name, password_hash="h")


def test_a_claim_reads_back_as_written_and_holds_until_its_quarantine_ends() -> None:
    live, erased = Claim(str(ALICE)), Claim(str(ALICE), NOW + QUARANTINE)
    assert live.encode() == str(ALICE)
    assert Claim.decode(live.encode()) == live and Claim.decode(erased.encode()) == erased
    assert live.holds_at(NOW + timedelta(days=3650))
    assert erased.holds_at(NOW + QUARANTINE - timedelta(seconds=1))
    assert not erased.holds_at(NOW + QUARANTINE)


def test_an_erasure_quarantines_the_name_then_frees_it() -> None:
    names = Names()
    assert user_decision(names, None, register(ALICE, "alice")).ok
    erased = user_decision(names, ALICE, EraseAccount(user_id=ALICE, username="alice"))
    assert erased.ok and erased.shredded == [profile_key_id(ALICE)]
    [event] = erased.events
    assert isinstance(event.payload, UserErased) and event.payload.free_after == NOW + QUARANTINE
    assert Claim.decode(names.owners["alice"]) == Claim(str(ALICE), NOW + QUARANTINE)

    taken = user_decision(names, None, register(BOB, "Alice"), NOW + QUARANTINE - timedelta(minutes=1))
    assert (taken.ok, taken.code) == (False, "username_taken")
    later = user_decision(names, None, register(BOB, "alice"), NOW + QUARANTINE)
    assert later.ok and names.owners["alice"] == str(BOB)


def test_an_erasure_decided_again_keeps_its_first_quarantine() -> None:
    names = Names()
    user_decision(names, None, register(ALICE, "alice"))
    body = EraseAccount(user_id=ALICE, username="alice")
    first = user_decision(names, ALICE, body)
    again = user_decision(names, ALICE, body, NOW + timedelta(days=1))
    assert again.ok and again.events[0].payload == first.events[0].payload
    assert Claim.decode(names.owners["alice"]).free_after == NOW + QUARANTINE


def test_only_the_owner_erases_an_account_and_only_its_own_name() -> None:
    names = Names()
    user_decision(names, None, register(ALICE, "alice"))
    user_decision(names, None, register(BOB, "bob"))
    assert user_decision(names, BOB, EraseAccount(user_id=ALICE, username="alice")).code == "forbidden"
    assert user_decision(names, BOB, EraseAccount(user_id=BOB, username="alice")).code == "not_found"
    assert user_decision(names, CAROL, EraseAccount(user_id=CAROL, username="carol")).code == "not_found"
    assert names.owners == {"alice": str(ALICE), "bob": str(BOB)}


def run(store: MemoryChatStore, actor: uuid.UUID, body: Body) -> Decision:
    return chat_rules.decide(store, command(actor, body), chat_id_key=KEY)


def sent_id(store: MemoryChatStore, chat_id: uuid.UUID, actor: uuid.UUID, cmid: str) -> uuid.UUID:
    decision = run(store, actor, SendMessage(chat_id=chat_id, client_msg_id=cmid, text=cmid))
    assert decision.ok
    return uuid.UUID(decision.result.model_dump(mode="json")["message"]["id"])


def test_an_erased_member_leaves_with_its_named_messages_deleted_and_no_others() -> None:
    store, chat_id = MemoryChatStore(), uuid.uuid4()
    assert run(store, ALICE, CreateChat(chat_id=chat_id, type="group", title="t", member_ids=[BOB, CAROL])).ok
    mine = [sent_id(store, chat_id, ALICE, f"a{i}") for i in range(3)]
    bobs = sent_id(store, chat_id, BOB, "b")
    decision = run(store, ALICE, EraseMember(chat_id=chat_id, user_id=ALICE, message_ids=[*mine[:2], bobs]))
    assert decision.ok
    deleted = [e.payload for e in decision.events if isinstance(e.payload, MessageDeleted)]
    assert [d.message_id for d in deleted] == mine[:2] and all(d.deleted_by == ALICE for d in deleted)
    [removed] = [e.payload for e in decision.events if isinstance(e.payload, MemberRemoved)]
    assert (removed.user_id, removed.reason) == (ALICE, "erased")
    chat = store.get_chat(str(chat_id))
    assert chat is not None and set(chat.members) == {str(BOB), str(CAROL)}
    assert sorted(chat.members.values()) == ["member", "owner"]  # the group is handed over
    bob_message = store.get_message(str(bobs))
    assert bob_message is not None and not bob_message.deleted

    straggler = run(store, ALICE, EraseMember(chat_id=chat_id, user_id=ALICE, message_ids=[mine[2]]))
    assert straggler.ok and [e.type for e in straggler.events] == ["message.deleted"]
    again = run(store, ALICE, EraseMember(chat_id=chat_id, user_id=ALICE, message_ids=mine))
    assert again.ok and again.events == []
    send_after = run(store, ALICE, SendMessage(chat_id=chat_id, client_msg_id="late", text="late"))
    assert (send_after.ok, send_after.code) == (False, "not_found")


def test_an_erased_member_leaves_a_direct_chat_too_and_only_it_may_ask() -> None:
    store = MemoryChatStore()
    chat_id = direct_chat_id(KEY, ALICE, BOB)
    assert run(store, ALICE, CreateChat(chat_id=chat_id, type="direct", member_ids=[BOB])).ok
    assert run(store, BOB, EraseMember(chat_id=chat_id, user_id=ALICE)).code == "forbidden"
    decision = run(store, ALICE, EraseMember(chat_id=chat_id, user_id=ALICE))
    assert decision.ok and [e.type for e in decision.events] == ["chat.member_removed"]
    chat = store.get_chat(str(chat_id))
    assert chat is not None and set(chat.members) == {str(BOB)}
    assert run(store, ALICE, EraseMember(chat_id=uuid.uuid4(), user_id=ALICE)).code == "not_found"
