"""The broker's client listener takes only a client that logs in (SASL/PLAIN, KAFKA_USERNAME and
KAFKA_PASSWORD): a local process without them, or with a wrong password, can neither list the
topics nor produce a command; with them, it can both.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from config.kafka import client_options
from config.settings import CommonSettings
from schemas import topics
from streams.topics import create_topics
from tests.kafka_tools import read_topic

pytestmark = pytest.mark.integration

REFUSAL_TIMEOUT_MS = 5000
"""A refused client fails at once; this bounds a broker that would hang instead."""


@pytest.fixture(scope="module")
async def settings() -> AsyncIterator[CommonSettings]:
    """The project's topics under a prefix of this module's own, the `message.send` one included."""
    settings = CommonSettings(topic_prefix=f"test.credentials.{uuid.uuid4().hex[:6]}.", topic_partitions=1)
    await create_topics(settings, (topics.MESSAGE_SEND,))
    yield settings
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        await admin.delete_topics([settings.topic(topics.MESSAGE_SEND.name)])
    finally:
        await admin.close()


def without_login(settings: CommonSettings) -> dict[str, Any]:
    return {"bootstrap_servers": settings.broker_list, "request_timeout_ms": REFUSAL_TIMEOUT_MS}


def wrong_password(settings: CommonSettings) -> dict[str, Any]:
    return {
        **client_options(settings),
        "sasl_plain_password": "not-the-password-" + uuid.uuid4().hex,
        "request_timeout_ms": REFUSAL_TIMEOUT_MS,
    }


def wrong_user(settings: CommonSettings) -> dict[str, Any]:
    return {**client_options(settings), "sasl_plain_username": "intruder", "request_timeout_ms": REFUSAL_TIMEOUT_MS}


REFUSED = [without_login, wrong_password, wrong_user]


async def list_topics(options: dict[str, Any]) -> set[str]:
    admin = AIOKafkaAdminClient(**options)
    try:
        await admin.start()
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def produce(options: dict[str, Any], topic: str, value: bytes) -> None:
    producer = AIOKafkaProducer(**options, acks="all")
    try:
        await producer.start()
        await producer.send_and_wait(topic, value, key=b"k")
    finally:
        await producer.stop()


@pytest.mark.parametrize("options", REFUSED, ids=lambda f: f.__name__)
async def test_a_client_without_the_login_cannot_list_topics(settings: CommonSettings, options: Any) -> None:
    with pytest.raises(KafkaError):
        await list_topics(options(settings))


@pytest.mark.parametrize("options", REFUSED, ids=lambda f: f.__name__)
async def test_a_client_without_the_login_cannot_produce_a_command(settings: CommonSettings, options: Any) -> None:
    topic = settings.topic(topics.MESSAGE_SEND.name)
    forged = f"forged {uuid.uuid4().hex}".encode()
    with pytest.raises(KafkaError):
        await produce(options(settings), topic, forged)
    assert forged not in [r.value for r in await read_topic(settings, topic)]


async def test_the_login_of_the_settings_lists_and_produces(settings: CommonSettings) -> None:
    topic = settings.topic(topics.MESSAGE_SEND.name)
    assert topic in await list_topics(client_options(settings))
    value = f"allowed {uuid.uuid4().hex}".encode()
    await produce(client_options(settings), topic, value)
    assert value in [r.value for r in await read_topic(settings, topic)]
