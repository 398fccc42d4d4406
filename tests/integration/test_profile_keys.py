"""The gateway's profile keys on the real broker and the real mirror (issue 15, docs/erasure.md):
a new account's key is written once and found again for its changes, by the instance that made
it (its tail), by another instance (its tail, waited for) and from the projections' mirror once
the tails forgot it; an account without a key goes plain only once the mirror has read past its
registration; an erased account's key is refused."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from config.kafka import client_options
from config.settings import GatewaySettings
from gateway.infra.content_keys import ContentKeys
from projections.key_mirror import catch_up
from projections.topic_reader import TopicReader
from runtime.sealing import new_key
from schemas import topics
from schemas.content_keys import key_record, tombstone
from schemas.sealed import profile_key_id
from streams.topics import create_topics
from tests.kafka_tools import read_topic

pytestmark = pytest.mark.integration

TAIL_WITHIN_S = 10.0


@pytest.fixture
async def settings(topic_prefix: str, database_url: str, jwt_secret: str) -> GatewaySettings:
    """A prefix of this module's own per test: each starts with an empty `content.keys`."""
    prefix = f"{topic_prefix}profilekeys.{uuid.uuid4().hex[:6]}."
    made = GatewaySettings(topic_prefix=prefix, database_url=database_url, topic_partitions=2, jwt_secret=jwt_secret)
    await create_topics(made, (topics.CONTENT_KEYS,))
    return made


@pytest.fixture
async def producer(settings: GatewaySettings) -> AsyncIterator[AIOKafkaProducer]:
    started = AIOKafkaProducer(**client_options(settings), acks="all")
    await started.start()
    yield started
    await started.stop()


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    yield connection
    await connection.close()


async def started(settings: GatewaySettings, producer: AIOKafkaProducer) -> ContentKeys:
    keys = ContentKeys(settings, producer)
    await keys.start()
    return keys


async def mirror(settings: GatewaySettings, conn: asyncpg.Connection) -> None:
    """What the projections worker does every 5 s."""
    async with TopicReader(settings) as reader:
        await catch_up(conn, reader, settings.topic(topics.CONTENT_KEYS.name))


async def tail_has(keys: ContentKeys, key_id: str, state: bytes | None) -> None:
    deadline = time.monotonic() + TAIL_WITHIN_S
    while keys.recent.known((key_id,)).get(key_id, b"") != state:
        assert time.monotonic() < deadline, f"the tail has not got {key_id}"
        await asyncio.sleep(0.05)


async def test_an_accounts_one_key_is_found_by_every_instance_and_from_the_mirror(
    settings: GatewaySettings, producer: AIOKafkaProducer, conn: asyncpg.Connection
) -> None:
    user = uuid.uuid4()
    registered = datetime.now(UTC)
    one, other = await started(settings, producer), await started(settings, producer)
    try:
        token, landed = await one.seal_new_profile(user, "Alice")
        await landed
        made = one.recent.known((profile_key_id(user),)).get(profile_key_id(user))
        assert made is not None
        assert await one.profile_key(conn, user, registered) == made, "the maker's own tail"
        assert await other.profile_key(conn, user, registered) == made, "another instance's tail"
        reply = {"id": str(user), "username": "alice", "display_name": token, "bio": "", "created_at": "x"}
        assert (await other.open_user(reply))["display_name"] == "Alice"

        other.recent.keys.clear()  # forgotten after KEEP_S
        await mirror(settings, conn)
        assert await other.profile_key(conn, user, registered) == made, "the mirror"
    finally:
        await one.stop()
        await other.stop()
    records = await read_topic(settings, settings.topic(topics.CONTENT_KEYS.name))
    assert [r.key for r in records] == [profile_key_id(user).encode()], "one record, never a second"


async def test_an_account_without_a_key_goes_plain_only_once_the_mirror_has_read_past_its_registration(
    settings: GatewaySettings, producer: AIOKafkaProducer, conn: asyncpg.Connection
) -> None:
    topic = settings.topic(topics.CONTENT_KEYS.name)
    for _ in range(4):
        other = profile_key_id(uuid.uuid4())
        await producer.send_and_wait(
            topic, key_record(other, new_key(), uuid.uuid4(), datetime.now(UTC))[1], other.encode()
        )
    keys = await started(settings, producer)
    try:
        long_ago = datetime.now(UTC) - timedelta(hours=1)
        assert await keys.profile_key(conn, uuid.uuid4(), long_ago) == "plain", "no record is as old as it"
        recent = datetime.now(UTC)
        assert await keys.profile_key(conn, uuid.uuid4(), recent) == "not_known_yet", "its key may be unread yet"
        await mirror(settings, conn)
        assert await keys.profile_key(conn, uuid.uuid4(), recent) == "plain"
        late = profile_key_id(uuid.uuid4())
        await producer.send_and_wait(topic, key_record(late, new_key(), uuid.uuid4(), recent)[1], late.encode())
        assert await keys.profile_key(conn, uuid.uuid4(), recent) == "not_known_yet", "a record the mirror lacks"
        await mirror(settings, conn)
        assert await keys.profile_key(conn, uuid.uuid4(), recent) == "plain"
    finally:
        await keys.stop()


async def test_an_erased_accounts_key_is_refused_from_the_tail_and_from_the_mirror(
    settings: GatewaySettings, producer: AIOKafkaProducer, conn: asyncpg.Connection
) -> None:
    user = uuid.uuid4()
    registered = datetime.now(UTC)
    topic = settings.topic(topics.CONTENT_KEYS.name)
    keys = await started(settings, producer)
    try:
        _, landed = await keys.seal_new_profile(user, "Alice")
        await landed
        await mirror(settings, conn)
        record_key, _ = tombstone(profile_key_id(user))
        await producer.send_and_wait(topic, None, key=record_key)
        await tail_has(keys, profile_key_id(user), None)
        assert await keys.profile_key(conn, user, registered) == "erased", "the tail saw the tombstone"
        keys.recent.keys.clear()
        assert await keys.profile_key(conn, user, registered) != "erased", "the mirror has not yet"
        await mirror(settings, conn)
        assert await keys.profile_key(conn, user, registered) == "erased", "the mirror"
    finally:
        await keys.stop()
