"""Records and bytes one message writes to Kafka, measured on the real broker with a real streams
worker (issue 14, deliverable 2; docs/benchmarks.md "Records and bytes per message").

A message to a chat of n members used to write n `message.delivered` records, one per recipient,
each a copy of the frame. Now it writes one record naming its recipients (more only past
`RECIPIENTS_PER_RECORD`), so the records of a message no longer grow with its chat and its bytes
grow by a user id per member instead of a frame per member.

Counted per topic of the test's prefix between two settled snapshots of the end offsets: records
(offsets) and the bytes of their keys and values (what the broker stores and every consumer
reads, without Kafka's per-record overhead). The sends come with an origin, as the gateway's do,
so the sender's record names the socket to skip.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer

from config.kafka import client_options
from schemas import topics
from schemas.commands import CreateChat, Origin, SendMessage
from schemas.models import direct_chat_id
from streams.pipeline import RECIPIENTS_PER_RECORD
from tests.integration.streams_harness import StreamsSystem, streams_system
from tests.integration.test_group_fanout import Offsets, bytes_between, settled

pytestmark = pytest.mark.integration

SIZES = (2, 10, 100)
"""Members of the chat, the sender included: a direct chat, groups of 10 and 100."""
MESSAGES = 5
"""Messages sent per size; the figures are their mean."""
TEXT = "a message of an ordinary length, about sixty characters long."


@pytest.fixture(scope="module")
async def system(
    topic_prefix: str, tmp_path_factory: pytest.TempPathFactory, jwt_secret: str
) -> AsyncIterator[StreamsSystem]:
    async with streams_system(f"{topic_prefix}volume.", tmp_path_factory.mktemp("volume"), jwt_secret) as system:
        system.start_worker()
        yield system


@pytest.fixture
async def consumer(system: StreamsSystem) -> AsyncIterator[AIOKafkaConsumer]:
    consumer = AIOKafkaConsumer(**client_options(system.settings), group_id=None, enable_auto_commit=False)
    await consumer.start()
    yield consumer
    await consumer.stop()


async def chat_of(system: StreamsSystem, size: int) -> tuple[uuid.UUID, uuid.UUID]:
    """A chat of `size` members (a direct chat for 2) and its creator."""
    creator = uuid.uuid4()
    others = [uuid.uuid4() for _ in range(size - 1)]
    kind = "direct" if size == 2 else "group"
    key = system.settings.chat_id_key.encode()
    chat_id = direct_chat_id(key, creator, others[0]) if kind == "direct" else uuid.uuid4()
    body = CreateChat(chat_id=chat_id, type=kind, title=None if size == 2 else "g", member_ids=others)
    reply = await system.bus.ask(topics.CHAT_COMMANDS, str(chat_id), body, creator)
    assert reply.ok, reply
    return chat_id, creator


def records_between(before: Offsets, after: Offsets, prefix: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for tp, end in after.items():
        if end > before.get(tp, 0):
            name = tp.topic.removeprefix(prefix)
            counts[name] = counts.get(name, 0) + end - before.get(tp, 0)
    return counts


Counts = dict[str, int]


async def measure(system: StreamsSystem, consumer: AIOKafkaConsumer, size: int) -> tuple[Counts, Counts]:
    """(records, bytes) per topic of `MESSAGES` messages to a chat of `size` members."""
    prefix = system.settings.topic_prefix
    chat_id, sender = await chat_of(system, size)
    origin = Origin(instance_id="volume", connection_id=uuid.uuid4().hex)
    before = await settled(consumer, prefix)
    for i in range(MESSAGES):
        body = SendMessage(chat_id=chat_id, client_msg_id=f"m{i}", text=TEXT)
        reply = await system.bus.ask(topics.MESSAGE_SEND, str(chat_id), body, sender, origin)
        assert reply.ok, reply
    after = await settled(consumer, prefix)
    sizes = {topic.removeprefix(prefix): n for topic, n in (await bytes_between(consumer, before, after)).items()}
    return records_between(before, after, prefix), sizes


async def test_a_message_writes_one_delivery_record_whatever_its_chat(
    system: StreamsSystem, consumer: AIOKafkaConsumer
) -> None:
    delivered = topics.MESSAGE_DELIVERED.name
    measured = {size: await measure(system, consumer, size) for size in SIZES}
    for size, (records, sizes) in measured.items():
        print(
            f"chat of {size}: per message {sum(records.values()) / MESSAGES:.1f} records, "
            f"{sum(sizes.values()) / MESSAGES:.0f} bytes in all; message.delivered "
            f"{records.get(delivered, 0) / MESSAGES:.1f} records, {sizes.get(delivered, 0) / MESSAGES:.0f} bytes; "
            f"by topic: records {records} bytes {sizes}"
        )
    for size, (records, _) in measured.items():
        expected = -(-size // RECIPIENTS_PER_RECORD)
        assert records[delivered] == expected * MESSAGES, (size, records)
    small, large = measured[SIZES[0]][1][delivered], measured[SIZES[-1]][1][delivered]
    assert large / small < 0.2 * SIZES[-1] / SIZES[0], "the bytes grow by an id per member, not a frame"
