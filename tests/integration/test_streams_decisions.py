"""The decisions of the streams workers, through the real Kafka, with real worker processes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from schemas import topics
from schemas.commands import CreateChat, MessageResult, Register, SendMessage
from schemas.events import UserRegistered
from tests.integration.streams_harness import StreamsSystem, streams_system
from tests.kafka_tools import read_events

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def system(
    topic_prefix: str, tmp_path_factory: pytest.TempPathFactory, jwt_secret: str
) -> AsyncIterator[StreamsSystem]:
    log_dir = tmp_path_factory.mktemp("streams")
    async with streams_system(f"{topic_prefix}decide.", log_dir, jwt_secret) as system:
        system.start_worker()
        yield system


async def register(system: StreamsSystem, name: str) -> tuple[uuid.UUID, bool, str | None]:
    user_id = uuid.uuid4()
    reply = await system.bus.ask(
        topics.USER_COMMANDS,
        name.casefold(),
        Register(user_id=user_id, username=name, display_name=name, password_hash="$argon2id$test"),
        None,
    )
    return user_id, reply.ok, reply.code


async def group(system: StreamsSystem, owner: uuid.UUID, members: list[uuid.UUID]) -> uuid.UUID:
    chat_id = uuid.uuid4()
    reply = await system.bus.ask(
        topics.CHAT_COMMANDS,
        str(chat_id),
        CreateChat(chat_id=chat_id, type="group", title="g", member_ids=members),
        owner,
    )
    assert reply.ok, reply
    return chat_id


async def test_twenty_concurrent_registrations_of_one_name_give_one_user(system: StreamsSystem) -> None:
    name = f"Ann_{uuid.uuid4().hex[:6]}"
    results = await asyncio.gather(*(register(system, name if i % 2 else name.upper()) for i in range(20)))
    winners = [r for r in results if r[1]]
    assert len(winners) == 1
    assert {r[2] for r in results if not r[1]} == {"username_taken"}
    events = await read_events(system.settings, system.settings.topic("user.events"))
    registered = [
        e.payload for e in events if isinstance(e.payload, UserRegistered) and e.payload.username == name.casefold()
    ]
    assert [p.user_id for p in registered] == [winners[0][0]]


async def test_a_thousand_concurrent_sends_get_seq_one_to_a_thousand(system: StreamsSystem) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    chat_id = await group(system, alice, [bob])
    sends = [
        system.bus.ask(
            topics.MESSAGE_SEND,
            str(chat_id),
            SendMessage(chat_id=chat_id, client_msg_id=f"c{i}", text=f"m{i}"),
            alice if i % 2 else bob,
        )
        for i in range(1000)
    ]
    replies = await asyncio.gather(*sends)
    assert all(r.ok for r in replies)
    assert sorted(r.result_as(MessageResult).message.seq for r in replies) == list(range(1, 1001))
    events = [
        e
        for e in await read_events(system.settings, system.settings.topic("message.events"))
        if e.aggregate_id == chat_id
    ]
    assert sorted(e.payload.seq for e in events) == list(range(1, 1001))  # type: ignore[attr-defined]


async def test_a_retried_send_answers_the_first_message_and_writes_nothing(system: StreamsSystem) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    chat_id = await group(system, alice, [bob])
    body = SendMessage(chat_id=chat_id, client_msg_id="same", text="hello")
    first = await system.bus.ask(topics.MESSAGE_SEND, str(chat_id), body, alice)
    again = await system.bus.ask(topics.MESSAGE_SEND, str(chat_id), body, alice)
    assert not first.duplicate and again.duplicate
    assert again.result_as(MessageResult).message == first.result_as(MessageResult).message
    assert again.positions == []


async def test_a_non_member_is_refused(system: StreamsSystem) -> None:
    chat_id = await group(system, uuid.uuid4(), [uuid.uuid4()])
    reply = await system.bus.ask(
        topics.MESSAGE_SEND, str(chat_id), SendMessage(chat_id=chat_id, client_msg_id="x", text="hi"), uuid.uuid4()
    )
    assert not reply.ok and reply.code == "not_found"
