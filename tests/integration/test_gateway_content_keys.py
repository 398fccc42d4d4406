"""The gateway's keys (`gateway.infra.content_keys`) on a real broker: a text sealed by another
gateway instance opens with the key tailed from `content.keys`; a tombstone makes it read as
erased; a key that never comes reads as erased after a bounded wait, counted as a fault."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import REGISTRY

from config.kafka import client_options
from config.settings import GatewaySettings
from gateway.infra.content_keys import WAIT_FOR_KEY_S, ContentKeys
from runtime.sealing import new_key, seal
from schemas import topics
from schemas.content_keys import key_record, tombstone
from schemas.sealed import message_key_id
from streams.topics import create_topics

pytestmark = pytest.mark.integration


@pytest.fixture
async def settings(topic_prefix: str, database_url: str, jwt_secret: str) -> GatewaySettings:
    prefix = f"{topic_prefix}gwkeys.{uuid.uuid4().hex[:6]}."
    made = GatewaySettings(topic_prefix=prefix, topic_partitions=2, database_url=database_url, jwt_secret=jwt_secret)
    await create_topics(made, (topics.CONTENT_KEYS,))
    return made


@pytest.fixture
async def producer(settings: GatewaySettings) -> AsyncIterator[AIOKafkaProducer]:
    started = AIOKafkaProducer(**client_options(settings), acks="all")
    await started.start()
    yield started
    await started.stop()


@pytest.fixture
async def keys(settings: GatewaySettings, producer: AIOKafkaProducer) -> AsyncIterator[ContentKeys]:
    started = ContentKeys(settings, producer)
    await started.start()
    yield started
    await started.stop()


def unopened(reason: str) -> float:
    return REGISTRY.get_sample_value("gateway_unopened_texts_total", {"reason": reason}) or 0.0


def message(message_id: uuid.UUID, text: str) -> dict[str, object]:
    return {"id": str(message_id), "chat_id": str(uuid.uuid4()), "seq": 1, "text": text, "deleted": False}


async def test_a_text_sealed_elsewhere_opens_with_the_tailed_key_until_its_tombstone(
    settings: GatewaySettings, producer: AIOKafkaProducer, keys: ContentKeys
) -> None:
    topic = settings.topic(topics.CONTENT_KEYS.name)
    message_id = uuid.uuid4()
    key_id, key = message_key_id(message_id, uuid.uuid4()), new_key()
    record_key, value = key_record(key_id, key, uuid.uuid4(), datetime.now(UTC))
    await producer.send_and_wait(topic, value, key=record_key)
    token = seal(key, key_id, "message", message_id, "from another gateway")
    assert (await keys.open_message(message(message_id, token)))["text"] == "from another gateway"

    shredded = unopened("shredded")
    await producer.send_and_wait(topic, None, key=tombstone(key_id)[0])
    started = time.monotonic()
    while keys.recent.known((key_id,)).get(key_id, key) is not None:
        assert time.monotonic() - started < 10, "the tombstone is tailed"
        await keys.recent.wait_for(("message:" + str(uuid.uuid4()) + ":" + str(uuid.uuid4()),), 2.0)
    assert (await keys.open_message(message(message_id, token)))["text"] == ""
    assert unopened("shredded") == shredded + 1


async def test_its_own_keys_open_at_once_and_a_key_that_never_comes_reads_as_erased(keys: ContentKeys) -> None:
    message_id = uuid.uuid4()
    token, landed = await keys.seal_message(message_id, uuid.uuid4(), "mine")
    await landed
    assert (await keys.open_message(message(message_id, token)))["text"] == "mine"
    plain = message(message_id, "plain, from before sealing")
    assert await keys.open_message(plain) is plain

    missing = unopened("key_missing")
    stranger = uuid.uuid4()
    lost = seal(new_key(), message_key_id(stranger, uuid.uuid4()), "message", stranger, "lost")
    started = time.monotonic()
    assert (await keys.open_message(message(stranger, lost)))["text"] == ""
    assert time.monotonic() - started >= WAIT_FOR_KEY_S * 0.9, "it waited for the tail first"
    assert unopened("key_missing") == missing + 1
