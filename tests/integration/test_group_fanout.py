"""What one membership change costs in Kafka, measured on the real broker with a real streams
worker (issue 10, row 5; contract v1.1 "Group size").

A member add used to send the whole Chat, member list included, to every member: bytes grew with
size × size. Now the members get a delta and only the added member the whole Chat, so the bytes
of one add grow linearly with the group, and a group holds at most `MAX_GROUP_MEMBERS`.

Bytes are the keys and values of the records the add appends to every topic of the test's prefix
(commands, events, `message.delivered`, the reply, the worker's changelogs): what the broker
stores and every consumer reads, without Kafka's per-record overhead.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from config.kafka import client_options
from schemas import topics
from schemas.commands import AddMember, CreateChat
from tests.integration.streams_harness import StreamsSystem, streams_system

pytestmark = pytest.mark.integration

SIZES = (50, 100, 200)
"""Group sizes after the add, with `MAX_GROUP_MEMBERS` itself (500 by default) as the last."""
QUIET_S = 0.5
"""The topics are taken as settled once no end offset moved for this long (the worker's
checkpoint writes follow its reply, unawaited)."""

Offsets = dict[TopicPartition, int]


@pytest.fixture(scope="module")
async def system(
    topic_prefix: str, tmp_path_factory: pytest.TempPathFactory, jwt_secret: str
) -> AsyncIterator[StreamsSystem]:
    async with streams_system(f"{topic_prefix}fanout.", tmp_path_factory.mktemp("fanout"), jwt_secret) as system:
        system.start_worker()
        yield system


@pytest.fixture
async def consumer(system: StreamsSystem) -> AsyncIterator[AIOKafkaConsumer]:
    consumer = AIOKafkaConsumer(**client_options(system.settings), group_id=None, enable_auto_commit=False)
    await consumer.start()
    yield consumer
    await consumer.stop()


async def end_offsets(consumer: AIOKafkaConsumer, prefix: str) -> Offsets:
    """Of every topic of `prefix`, those the worker created lazily included. The cluster's
    metadata is asked for all topics: once a consumer has assignments, its own metadata follows
    those topics only."""
    cluster = await consumer._client.fetch_all_metadata()
    tps = [
        TopicPartition(topic, p)
        for topic in sorted(cluster.topics())
        if topic.startswith(prefix)
        for p in sorted(cluster.partitions_for_topic(topic) or ())
    ]
    return dict(await consumer.end_offsets(tps))


async def settled(consumer: AIOKafkaConsumer, prefix: str, timeout: float = 30.0) -> Offsets:
    """The end offsets of every topic of `prefix`, once they stopped moving."""
    deadline = asyncio.get_running_loop().time() + timeout
    last = await end_offsets(consumer, prefix)
    while asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(QUIET_S)
        now = await end_offsets(consumer, prefix)
        if now == last:
            return now
        last = now
    raise AssertionError("the topics did not settle")


async def bytes_between(consumer: AIOKafkaConsumer, before: Offsets, after: Offsets) -> dict[str, int]:
    """Per topic (without the prefix's part before the logical name), the key and value bytes
    of the records appended between the two snapshots."""
    grown = {tp: (before.get(tp, 0), end) for tp, end in after.items() if end > before.get(tp, 0)}
    consumer.assign(list(grown))
    for tp, (start, _) in grown.items():
        consumer.seek(tp, start)
    sizes: dict[str, int] = {}
    remaining = set(grown)
    while remaining:
        batches = await consumer.getmany(*remaining, timeout_ms=1000)
        for tp, records in batches.items():
            end = grown[tp][1]
            for record in records:
                if record.offset < end:
                    sizes[tp.topic] = sizes.get(tp.topic, 0) + len(record.key or b"") + len(record.value or b"")
            if records and records[-1].offset + 1 >= end:
                remaining.discard(tp)
    return sizes


async def full_group(system: StreamsSystem, size: int) -> tuple[uuid.UUID, uuid.UUID]:
    """A group of `size` members (its owner included), and its owner. The chat agent checks no
    user's existence (the gateway does, against the read models), so members are fresh ids."""
    owner, chat_id = uuid.uuid4(), uuid.uuid4()
    members = [uuid.uuid4() for _ in range(size - 1)]
    body = CreateChat(chat_id=chat_id, type="group", title="g", member_ids=members)
    reply = await system.bus.ask(topics.CHAT_COMMANDS, str(chat_id), body, owner)
    assert reply.ok, reply
    return chat_id, owner


async def add_one(system: StreamsSystem, chat_id: uuid.UUID, owner: uuid.UUID) -> tuple[bool, str | None]:
    reply = await system.bus.ask(
        topics.CHAT_COMMANDS, str(chat_id), AddMember(chat_id=chat_id, user_id=uuid.uuid4()), owner
    )
    return reply.ok, reply.code


async def measure_one_add(system: StreamsSystem, consumer: AIOKafkaConsumer, size: int) -> dict[str, int]:
    """The bytes, per topic, of the add that makes a group of `size - 1` members one of `size`."""
    prefix = system.settings.topic_prefix
    chat_id, owner = await full_group(system, size - 1)
    before = await settled(consumer, prefix)
    assert await add_one(system, chat_id, owner) == (True, None)
    after = await settled(consumer, prefix)
    return {topic.removeprefix(prefix): n for topic, n in (await bytes_between(consumer, before, after)).items()}


async def test_the_bytes_of_one_member_add_grow_linearly_with_the_group(
    system: StreamsSystem, consumer: AIOKafkaConsumer
) -> None:
    limit = system.settings.max_group_members
    sizes = (*(s for s in SIZES if s < limit), limit)
    measured = {size: await measure_one_add(system, consumer, size) for size in sizes}
    delivered = topics.MESSAGE_DELIVERED.name
    for size, by_topic in measured.items():
        total = sum(by_topic.values())
        print(f"one add to a group of {size}: {total} bytes in all, {total / size:.0f} per member; {by_topic}")
    totals = {size: sum(by_topic.values()) for size, by_topic in measured.items()}
    smallest, largest = sizes[0], sizes[-1]
    growth = largest / smallest
    assert measured[largest][delivered] / measured[smallest][delivered] <= 1.2 * growth, measured
    assert totals[largest] / totals[smallest] <= 1.2 * growth, totals
    per_member = [totals[size] / size for size in sizes]
    assert max(per_member) <= 1.5 * min(per_member), per_member


async def test_the_member_past_the_limit_is_refused_as_group_full(system: StreamsSystem) -> None:
    limit = system.settings.max_group_members
    chat_id, owner = await full_group(system, limit)
    assert await add_one(system, chat_id, owner) == (False, "group_full")
    too_big = uuid.uuid4()
    body = CreateChat(chat_id=too_big, type="group", title="g", member_ids=[uuid.uuid4() for _ in range(limit)])
    reply = await system.bus.ask(topics.CHAT_COMMANDS, str(too_big), body, owner)
    assert (reply.ok, reply.code) == (False, "group_full"), f"{limit} others and the creator make {limit + 1}"
