"""Event logs for the projection tests, written as the streams would write them.

`EventLog` builds events that follow the rules the streams enforce (seq 1, 2, 3 … per chat,
recipients are the members at the time, only members read), and the records of the compacted
`user.credentials` beside them (`credentials`: registrations of this version, password changes,
an erasure's tombstone); `mixed_workload` makes a seeded random one of every event type. The tests
at the bottom check the builder itself.
"""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaProducer

from config.kafka import client_options
from config.settings import CommonSettings
from projections.model import Record
from schemas import topics
from schemas.credentials import Credential, credential_record, tombstone
from schemas.events import (
    ChatCreated,
    Event,
    MemberAdded,
    MemberRemoved,
    MessageDeleted,
    MessageEdited,
    MessageSent,
    PasswordChanged,
    Payload,
    ProfileUpdated,
    ReadMarkerMoved,
    RoleChanged,
    UserErased,
    UserRegistered,
    decode_event,
    encode_event,
    new_event,
)
from schemas.models import ChatType, Member, Role
from schemas.topics import TopicSpec

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Logged:
    topic: TopicSpec
    key: uuid.UUID
    event: Event


@dataclass
class ChatState:
    members: dict[uuid.UUID, Role] = field(default_factory=dict)
    last_seq: int = 0
    messages: dict[int, tuple[uuid.UUID, uuid.UUID]] = field(default_factory=dict)
    """seq -> (message_id, sender_id), of the messages not deleted."""


class EventLog:
    """Events in log order, each a millisecond after the one before."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)
        self.clock = T0
        self.entries: list[Logged] = []
        self.chats: dict[uuid.UUID, ChatState] = {}
        self.users: list[uuid.UUID] = []
        self.credentials: list[tuple[bytes, bytes | None]] = []
        """The records of `user.credentials`, in log order (one partition)."""

    def new_id(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    def add(self, topic: TopicSpec, key: uuid.UUID, payload: Payload) -> Event:
        self.clock += timedelta(milliseconds=1)
        event = new_event(
            payload,
            aggregate_id=key,
            event_id=self.new_id(),
            actor_id=None,
            correlation_id=None,
            occurred_at=self.clock,
        )
        self.entries.append(Logged(topic, key, event))
        return event

    def register(self, username: str, display_name: str | None = None, *, legacy: bool = True) -> uuid.UUID:
        """A registration as written before the hash left the event log (`legacy`: the hash in the
        event), or as written now (no hash in the event, a credential record beside it)."""
        user = self.new_id()
        password_hash = f"$argon2id$v=19$m=65536,t=3,p=4${username}"
        payload = UserRegistered(
            user_id=user,
            username=username,
            display_name=display_name or username.title(),
            password_hash=password_hash if legacy else None,
        )
        event = self.add(topics.USER_EVENTS, user, payload)
        if not legacy:
            self.credential(user, password_hash, event.occurred_at)
        self.users.append(user)
        return user

    def credential(self, user: uuid.UUID, password_hash: str | None, at: datetime | None = None) -> None:
        """A record of `user.credentials`: a hash, or (None) a tombstone."""
        if password_hash is None:
            self.credentials.append(tombstone(user))
        else:
            credential = Credential(user_id=user, password_hash=password_hash, changed_at=at or self.clock)
            self.credentials.append(credential_record(credential))

    def change_password(self, user: uuid.UUID, password_hash: str) -> None:
        event = self.add(topics.USER_EVENTS, user, PasswordChanged(user_id=user))
        self.credential(user, password_hash, event.occurred_at)

    def update_profile(self, user: uuid.UUID, display_name: str | None = None, bio: str | None = None) -> None:
        self.add(topics.USER_EVENTS, user, ProfileUpdated(user_id=user, display_name=display_name, bio=bio))

    def erase(self, user: uuid.UUID) -> None:
        """`user.erased` alone (what the users projection reads; the chat side is the chat agent's)."""
        self.add(topics.USER_EVENTS, user, UserErased(user_id=user, free_after=datetime(2027, 1, 1, tzinfo=UTC)))

    def create_chat(self, creator: uuid.UUID, others: list[uuid.UUID], title: str | None = None) -> uuid.UUID:
        chat = self.new_id()
        kind: ChatType = "direct" if title is None and len(others) == 1 else "group"
        members: dict[uuid.UUID, Role] = {
            creator: "owner" if kind == "group" else "member",
            **dict.fromkeys(others, "member"),
        }
        payload = ChatCreated(
            chat_id=chat,
            type=kind,
            title=title,
            created_by=creator,
            members=[Member(user_id=u, role=r) for u, r in members.items()],
        )
        self.add(topics.CHAT_EVENTS, chat, payload)
        self.chats[chat] = ChatState(members=dict(members))
        return chat

    def add_member(self, chat: uuid.UUID, user: uuid.UUID, role: Role = "member") -> None:
        by = next(iter(self.chats[chat].members))
        self.add(topics.CHAT_EVENTS, chat, MemberAdded(chat_id=chat, user_id=user, role=role, added_by=by))
        self.chats[chat].members[user] = role

    def remove_member(self, chat: uuid.UUID, user: uuid.UUID) -> None:
        payload = MemberRemoved(chat_id=chat, user_id=user, removed_by=user, reason="left")
        self.add(topics.CHAT_EVENTS, chat, payload)
        del self.chats[chat].members[user]

    def change_role(self, chat: uuid.UUID, user: uuid.UUID, role: Role) -> None:
        self.add(topics.CHAT_EVENTS, chat, RoleChanged(chat_id=chat, user_id=user, role=role))
        self.chats[chat].members[user] = role

    def send(self, chat: uuid.UUID, sender: uuid.UUID, text: str) -> tuple[uuid.UUID, int]:
        state = self.chats[chat]
        state.last_seq += 1
        message = self.new_id()
        payload = MessageSent(
            message_id=message,
            chat_id=chat,
            seq=state.last_seq,
            sender_id=sender,
            text=text,
            client_msg_id=f"c-{state.last_seq}",
            recipients=list(state.members),
        )
        self.add(topics.MESSAGE_EVENTS, chat, payload)
        state.messages[state.last_seq] = (message, sender)
        return message, state.last_seq

    def edit(self, chat: uuid.UUID, seq: int, text: str) -> None:
        message, _ = self.chats[chat].messages[seq]
        self.add(topics.MESSAGE_EVENTS, chat, MessageEdited(message_id=message, chat_id=chat, seq=seq, text=text))

    def delete(self, chat: uuid.UUID, seq: int) -> None:
        message, sender = self.chats[chat].messages.pop(seq)
        payload = MessageDeleted(message_id=message, chat_id=chat, seq=seq, deleted_by=sender)
        self.add(topics.MESSAGE_EVENTS, chat, payload)

    def read(self, chat: uuid.UUID, user: uuid.UUID, seq: int) -> None:
        self.add(topics.MESSAGE_EVENTS, chat, ReadMarkerMoved(chat_id=chat, user_id=user, seq=seq))

    def of(self, topic: TopicSpec) -> list[Logged]:
        return [e for e in self.entries if e.topic == topic]

    def records(self, topic: TopicSpec, first_offset: int = 0) -> list[Record]:
        """The events of `topic` (the credential records of `user.credentials`) as the records of
        one partition, from `first_offset` on."""
        if topic == topics.USER_CREDENTIALS:
            return [Record(0, first_offset + i, value, key) for i, (key, value) in enumerate(self.credentials)]
        return [Record(0, first_offset + i, encode_event(e.event)) for i, e in enumerate(self.of(topic))]

    def count(self, topic: TopicSpec) -> int:
        """How many records `topic` holds."""
        return len(self.records(topic))

    def size(self) -> int:
        """How many records every topic holds together: the events and the credential records."""
        return len(self.entries) + len(self.credentials)


def mixed_workload(seed: int = 7, users: int = 10, chats: int = 5, steps: int = 300) -> EventLog:
    """A random but valid log of every event type, the same for the same arguments."""
    log = EventLog(seed)
    rng = log.rng
    people = [log.register(f"user_{i}", legacy=i % 2 == 0) for i in range(users)]
    for user in rng.sample(people, users // 3):
        log.update_profile(user, bio=f"bio of {user.hex[:6]}")
    for i, user in enumerate(rng.sample(people, 3)):
        log.change_password(user, f"$argon2id$v=19$m=19456,t=2,p=1$changed{i}")
    log.credential(people[-1], None)
    log.update_profile(people[0], display_name="First")
    rooms = [log.create_chat(people[0], [people[1]])]
    rooms += [log.create_chat(people[i], rng.sample(people, 3), title=f"room {i}") for i in range(1, chats)]
    actions = ["send"] * 12 + ["read"] * 4 + ["edit"] * 2 + ["delete", "add", "remove", "role"]
    for _ in range(steps):
        chat = rng.choice(rooms)
        state = log.chats[chat]
        members = list(state.members)
        action = rng.choice(actions)
        if action == "send" or not state.messages:
            log.send(chat, rng.choice(members), f"message {state.last_seq + 1} {rng.random():.6f}")
        elif action == "read":
            log.read(chat, rng.choice(members), rng.randint(0, state.last_seq))
        elif action == "edit":
            log.edit(chat, rng.choice(list(state.messages)), f"edited {rng.random():.6f}")
        elif action == "delete":
            log.delete(chat, rng.choice(list(state.messages)))
        elif action == "add":
            outsiders = [u for u in people if u not in state.members]
            if outsiders:
                log.add_member(chat, rng.choice(outsiders))
        elif action == "remove" and len(members) > 2:
            log.remove_member(chat, members[-1])
        elif action == "role" and len(members) > 1:
            log.change_role(chat, members[-1], rng.choice(["admin", "member"]))
    log.erase(people[-1])
    log.erase(people[-1])
    log.register(f"user_{users - 1}")  # the erased account's name again, its quarantine over
    return log


async def produce(settings: CommonSettings, log: EventLog, extra: Sequence[tuple[TopicSpec, bytes]] = ()) -> None:
    """Write the log to the prefixed topics, keyed as `schemas.topics` says, then `extra` raw values."""
    producer = AIOKafkaProducer(**client_options(settings), acks="all", linger_ms=5)
    await producer.start()
    try:
        for entry in log.entries:
            await producer.send(
                settings.topic(entry.topic.name), encode_event(entry.event), key=str(entry.key).encode()
            )
        for key, credential in log.credentials:
            await producer.send(settings.topic(topics.USER_CREDENTIALS.name), credential, key=key)
        for topic, value in extra:
            await producer.send(settings.topic(topic.name), value, key=b"bad")
        await producer.flush()
    finally:
        await producer.stop()


def test_the_workload_is_the_same_for_the_same_seed_and_has_every_type() -> None:
    first, second = mixed_workload(seed=3), mixed_workload(seed=3)
    assert [encode_event(e.event) for e in first.entries] == [encode_event(e.event) for e in second.entries]
    assert {e.event.type for e in first.entries} == {
        "user.registered",
        "user.profile_updated",
        "user.erased",
        "user.password_changed",
        "chat.created",
        "chat.member_added",
        "chat.member_removed",
        "chat.role_changed",
        "message.sent",
        "message.edited",
        "message.deleted",
        "message.read",
    }


def test_the_workload_decodes_and_counts_seq_per_chat_without_gaps() -> None:
    log = mixed_workload(seed=5)
    seqs: dict[uuid.UUID, list[int]] = defaultdict(list)
    for entry in log.of(topics.MESSAGE_EVENTS):
        event = decode_event(encode_event(entry.event))
        assert event == entry.event
        if isinstance(event.payload, MessageSent):
            seqs[event.payload.chat_id].append(event.payload.seq)
    assert all(s == list(range(1, len(s) + 1)) for s in seqs.values())
