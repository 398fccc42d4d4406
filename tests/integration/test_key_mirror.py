"""`content.keys` on the real broker and its mirror in a real PostgreSQL (docs/erasure.md): the
mirror follows keys and tombstones once each, tells a shredded key from a missing one, and the
broker itself forgets a shredded key once its segment is compacted."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from config.kafka import client_options
from config.settings import CommonSettings
from projections.key_mirror import MIRROR, catch_up
from projections.model import Params
from projections.runtime import Runtime
from projections.sealed_texts import ERASED_TEXT, OPENER, SealedParam, TextOpener, keys_for
from projections.topic_reader import TopicReader
from runtime.key_tail import KeyTail
from runtime.sealing import Unopened, new_key, open_sealed, seal
from schemas import topics
from schemas.content_keys import key_record, tombstone
from schemas.sealed import b64, message_key_id
from streams.topics import create_topics
from tests.kafka_tools import read_topic
from tests.processes import free_port

pytestmark = pytest.mark.integration

COMPACTION_MS = 1000
COMPACTED_WITHIN_S = 120.0
"""Segment roll and compaction lag (1 s each), the cleaner's back-off (15 s by default), margin."""


@pytest.fixture
async def settings(topic_prefix: str, database_url: str) -> CommonSettings:
    """A prefix of this module's own, so that each test starts with an empty `content.keys`."""
    prefix = f"{topic_prefix}keys.{uuid.uuid4().hex[:6]}."
    made = CommonSettings(
        topic_prefix=prefix, database_url=database_url, topic_partitions=2, content_keys_compaction_ms=COMPACTION_MS
    )
    await create_topics(made, (topics.CONTENT_KEYS,))
    return made


@pytest.fixture
async def producer(settings: CommonSettings) -> AsyncIterator[AIOKafkaProducer]:
    started = AIOKafkaProducer(**client_options(settings), acks="all")
    await started.start()
    yield started
    await started.stop()


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    yield connection
    await connection.close()


@pytest.fixture
async def reader(settings: CommonSettings) -> AsyncIterator[TopicReader]:
    async with TopicReader(settings) as started:
        yield started


def new_key_id() -> str:
    return message_key_id(uuid.uuid4(), uuid.uuid4())


async def put_key(producer: AIOKafkaProducer, topic: str, key_id: str, key: bytes, partition: int = 0) -> None:
    record_key, value = key_record(key_id, key, uuid.uuid4(), datetime.now(UTC))
    await producer.send_and_wait(topic, value, key=record_key, partition=partition)


async def shred(producer: AIOKafkaProducer, topic: str, key_id: str, partition: int = 0) -> None:
    record_key, _ = tombstone(key_id)
    await producer.send_and_wait(topic, None, key=record_key, partition=partition)


async def test_the_mirror_follows_keys_and_tombstones_once(
    settings: CommonSettings, producer: AIOKafkaProducer, conn: asyncpg.Connection, reader: TopicReader
) -> None:
    topic = settings.topic(topics.CONTENT_KEYS.name)
    kept, shredded, never = new_key_id(), new_key_id(), new_key_id()
    kept_key, shredded_key = new_key(), new_key()
    await put_key(producer, topic, kept, kept_key, partition=0)
    await put_key(producer, topic, shredded, shredded_key, partition=1)
    await producer.send_and_wait(topic, b"not a key", key=new_key_id().encode(), partition=1)
    await shred(producer, topic, shredded, partition=1)

    assert await catch_up(conn, reader, topic) == 4
    keys = await keys_for(conn, [kept, shredded, never])
    assert keys == {kept: kept_key, shredded: None}
    subject = uuid.uuid4()
    assert open_sealed(seal(kept_key, kept, "message", subject, "still here"), "message", subject, keys) == "still here"
    gone = seal(shredded_key, shredded, "message", subject, "erased")
    assert open_sealed(gone, "message", subject, keys) == Unopened(shredded, "shredded")
    lost = seal(new_key(), never, "message", subject, "lost")
    assert open_sealed(lost, "message", subject, keys) == Unopened(never, "key_missing")

    row = await conn.fetchrow("SELECT key, owner_id, shredded_at FROM content_keys WHERE key_id = $1", shredded)
    assert row is not None and row["key"] is None and row["owner_id"] is not None and row["shredded_at"] is not None
    offsets = await conn.fetch(
        "SELECT partition, next_offset FROM projection_offsets WHERE projection = $1 ORDER BY partition", MIRROR
    )
    assert [(r["partition"], r["next_offset"]) for r in offsets] == [(0, 1), (1, 3)]

    assert await catch_up(conn, reader, topic) == 0, "nothing read twice"
    await put_key(producer, topic, never, new_key(), partition=0)
    assert await catch_up(conn, reader, topic) == 1
    assert set(await keys_for(conn, [never])) == {never}


@pytest.fixture
async def tail(settings: CommonSettings) -> AsyncIterator[KeyTail]:
    topic = settings.topic(topics.CONTENT_KEYS.name)
    started = KeyTail.of(settings, topic, keep_s=60.0)
    await started.start()
    async with AIOKafkaProducer(**client_options(settings)) as producer:
        warm_up = new_key_id()
        await put_key(producer, topic, warm_up, new_key(), partition=1)
        await started.wait_for((warm_up,), 10.0)
    assert started.known((warm_up,)), "the tail follows the topic"
    yield started
    await started.stop()


async def test_the_worker_opens_a_new_text_with_its_tail_and_a_shredding_in_either_wins(
    settings: CommonSettings, producer: AIOKafkaProducer, conn: asyncpg.Connection, reader: TopicReader, tail: KeyTail
) -> None:
    """The projections worker's path: a key written a moment ago is in its tail, not yet in the
    mirror, and opens without a catch-up (which a sender's ack would wait on)."""
    topic = settings.topic(topics.CONTENT_KEYS.name)
    catch_ups = 0

    async def counted_catch_up() -> None:
        nonlocal catch_ups
        catch_ups += 1

    opener = TextOpener()
    opener.recent = tail
    opener.follow(counted_catch_up)
    message_id = uuid.uuid4()
    key_id, key = message_key_id(message_id, uuid.uuid4()), new_key()
    rows: list[Params] = [(SealedParam(seal(key, key_id, "message", message_id, "just sent"), "message", message_id),)]
    await put_key(producer, topic, key_id, key)
    assert await keys_for(conn, [key_id]) == {}, "not in the mirror"
    assert await opener.open(conn, list(rows), (0,)) == [("just sent",)]
    assert catch_ups == 0

    await catch_up(conn, reader, topic)
    await shred(producer, topic, key_id)
    deadline = time.monotonic() + 10
    while tail.known((key_id,)) != {key_id: None}:
        assert time.monotonic() < deadline, "the tail reads the tombstone"
        await tail.wait_for(("none:" + key_id,), 0.2)
    assert await keys_for(conn, [key_id]) == {key_id: key}, "the mirror has not read the tombstone yet"
    assert await opener.open(conn, list(rows), (0,)) == [(ERASED_TEXT,)], "the tail's shredding wins"

    stranger = uuid.uuid4()
    lost_id = message_key_id(stranger, uuid.uuid4())
    lost: list[Params] = [(SealedParam(seal(new_key(), lost_id, "message", stranger, "lost"), "message", stranger),)]
    assert await opener.open(conn, lost, (0,)) == [(ERASED_TEXT,)]
    assert catch_ups == 3, "a key neither holds is looked for in the log before it is taken as lost"


async def test_the_workers_tail_starts_once_the_broker_answers(settings: CommonSettings) -> None:
    """A worker whose broker does not answer yet opens texts from the mirror meanwhile, and keeps
    trying to start its tail instead of failing."""
    unreachable = settings.model_copy(update={"kafka_brokers": f"127.0.0.1:{free_port()}"})
    waiting = asyncio.create_task(Runtime(unreachable).follow_recent_keys())
    await asyncio.sleep(2.0)
    assert not waiting.done() and OPENER.recent is None, "still trying, nothing half started"
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)

    runtime = Runtime(settings)
    await asyncio.wait_for(runtime.follow_recent_keys(), 30)
    try:
        assert OPENER.recent is not None and OPENER.recent.topic == settings.topic(topics.CONTENT_KEYS.name)
    finally:
        await runtime.close_reader()
    assert OPENER.recent is None


async def test_two_mirrors_at_once_apply_each_record_once(
    settings: CommonSettings, producer: AIOKafkaProducer, database_url: str, reader: TopicReader
) -> None:
    topic = settings.topic(topics.CONTENT_KEYS.name)
    ids = [new_key_id() for _ in range(200)]
    for index, key_id in enumerate(ids):
        await put_key(producer, topic, key_id, new_key(), partition=index % 2)
    for key_id in ids[::2]:
        await shred(producer, topic, key_id, partition=ids.index(key_id) % 2)
    one, two = await asyncpg.connect(database_url), await asyncpg.connect(database_url)
    try:
        async with TopicReader(settings) as other:
            await asyncio.gather(catch_up(one, reader, topic), catch_up(two, other, topic))
        rows = await one.fetch("SELECT key_id, key IS NULL AS shredded FROM content_keys")
    finally:
        await one.close()
        await two.close()
    assert {r["key_id"]: r["shredded"] for r in rows} == {key_id: i % 2 == 0 for i, key_id in enumerate(ids)}


async def test_the_broker_forgets_a_shredded_key_once_compacted(
    settings: CommonSettings, producer: AIOKafkaProducer
) -> None:
    """What a consumer reads from the start of the topic is what the broker still has on disk
    (compaction rewrites the segments; the files of the old ones follow `file.delete.delay.ms`)."""
    topic = settings.topic(topics.CONTENT_KEYS.name)
    doomed, kept = new_key_id(), new_key_id()
    doomed_key = new_key()
    await put_key(producer, topic, doomed, doomed_key)
    await put_key(producer, topic, kept, new_key())
    await shred(producer, topic, doomed)
    secret = b64(doomed_key).encode()

    async def still_there() -> bool:
        records = [r for r in await read_topic(settings, topic) if r.partition == 0]
        return any(r.value is not None and secret in r.value for r in records)

    assert await still_there()
    deadline = time.monotonic() + COMPACTED_WITHIN_S
    filler = new_key_id()
    while await still_there():
        assert time.monotonic() < deadline, f"the shredded key is still in {topic} after {COMPACTED_WITHIN_S}s"
        await asyncio.sleep(COMPACTION_MS / 1000)
        await put_key(producer, topic, filler, new_key())  # rolls the active segment, which is never compacted
    records = [r for r in await read_topic(settings, topic) if r.partition == 0]
    assert any(r.key == doomed.encode() and r.value is None for r in records), "the tombstone stays a while"
    assert any(r.key == kept.encode() and r.value is not None for r in records), "the other keys stay"
