"""Sealed texts through the projections and the rebuild, on real Kafka and PostgreSQL
(docs/erasure.md): a log whose every message text is sealed, with the keys of deleted messages
and of superseded versions shredded, one key lost and one corrupt, is applied by the worker's
statement path and bulk-loaded (in one process and in two): the same rows everywhere, each text
the one its live key opens, the empty string where the key is shredded, lost or wrong (and those
two reported), never any other text."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import REGISTRY

from config.kafka import client_options
from config.settings import CommonSettings
from projections.key_mirror import catching_up
from projections.sealed_texts import OPENER
from projections.topic_reader import TopicReader
from runtime.sealing import new_key, seal
from schemas import topics
from schemas.content_keys import key_record, tombstone
from schemas.events import MessageDeleted, MessageEdited, MessageSent
from schemas.sealed import message_key_id
from streams.topics import create_topics
from tests.integration.test_bulk_load import (
    apply_by_statement,
    contents,
    create_schema,
    differences,
    finish_schema,
    load_all,
    rich_workload,
)
from tests.integration.test_projections_rebuild import delete_event_topics
from tests.integration.test_projections_workload import EventLog, Logged, produce

pytestmark = pytest.mark.integration

PARTITIONS = 4


@pytest.fixture
async def settings(topic_prefix: str, database_url: str) -> AsyncIterator[CommonSettings]:
    prefix = f"{topic_prefix}sealed.{uuid.uuid4().hex[:6]}."
    settings = CommonSettings(topic_prefix=prefix, database_url=database_url, topic_partitions=PARTITIONS)
    await create_topics(settings, (*topics.EVENT_TOPICS, topics.USER_CREDENTIALS, topics.CONTENT_KEYS))
    yield settings
    await delete_event_topics(settings)


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    yield connection
    await connection.close()


class SealedLog:
    """`log` with every message text sealed under a key of its own version, and the key fates the
    deciding agent gives them: the last version of a message not deleted keeps its key; every
    other version's key is shredded."""

    def __init__(self, log: EventLog) -> None:
        self.keys: dict[str, bytes] = {}
        self.plain: dict[str, str] = {}
        """key id -> the text it seals."""
        sealed_of: dict[int, Logged] = {}
        versions: dict[uuid.UUID, list[str]] = {}
        deleted: set[uuid.UUID] = set()
        entries = []
        for entry in log.entries:
            payload = entry.event.payload
            if isinstance(payload, MessageDeleted):
                deleted.add(payload.message_id)
            if isinstance(payload, (MessageSent, MessageEdited)):
                if id(entry) not in sealed_of:
                    sealed_of[id(entry)] = self.seal(entry, payload, versions)
                entries.append(sealed_of[id(entry)])
            else:
                entries.append(entry)
        log.entries = entries
        self.live = {ids[-1] for message, ids in versions.items() if message not in deleted}
        self.shredded = set(self.keys) - self.live

    def seal(self, entry: Logged, payload: MessageSent | MessageEdited, versions: dict[uuid.UUID, list[str]]) -> Logged:
        key_id = message_key_id(payload.message_id, uuid.uuid4())
        key = new_key()
        assert payload.text is not None
        self.keys[key_id], self.plain[key_id] = key, payload.text
        versions.setdefault(payload.message_id, []).append(key_id)
        token = seal(key, key_id, "message", payload.message_id, payload.text)
        sealed = payload.model_copy(update={"text": None, "sealed_text": token})
        return Logged(entry.topic, entry.key, entry.event.model_copy(update={"payload": sealed}))


def expected_texts(log: EventLog, opens: dict[str, str]) -> dict[uuid.UUID, tuple[str, bool]]:
    """message id -> (text, deleted) as the messages statement leaves them, each version's text
    being what its key opens (`opens`: key id -> text), else the empty string."""
    rows: dict[uuid.UUID, tuple[str, bool]] = {}
    seqs: set[tuple[uuid.UUID, int]] = set()
    for entry in log.entries:
        p = entry.event.payload
        if isinstance(p, (MessageSent, MessageEdited)):
            assert p.sealed_text is not None
            text = opens.get(p.sealed_text.split(".")[2], "")
        if isinstance(p, MessageSent) and p.message_id not in rows and (p.chat_id, p.seq) not in seqs:
            seqs.add((p.chat_id, p.seq))
            rows[p.message_id] = (text, False)
        elif isinstance(p, MessageEdited) and p.message_id in rows and not rows[p.message_id][1]:
            rows[p.message_id] = (text, False)
        elif isinstance(p, MessageDeleted) and p.message_id in rows and not rows[p.message_id][1]:
            rows[p.message_id] = ("", True)
    return rows


async def produce_keys(settings: CommonSettings, sealed: SealedLog, lost: str, corrupt: str) -> None:
    """Every key, then the tombstones of the shredded ones; `lost` never written, `corrupt` wrong."""
    producer = AIOKafkaProducer(**client_options(settings), acks="all", linger_ms=5)
    await producer.start()
    topic = settings.topic(topics.CONTENT_KEYS.name)
    owner = uuid.uuid4()
    try:
        for key_id, key in sealed.keys.items():
            if key_id != lost:
                record_key, value = key_record(
                    key_id, new_key() if key_id == corrupt else key, owner, datetime.now(UTC)
                )
                await producer.send(topic, value, key=record_key)
        for key_id in sealed.shredded:
            record_key, _ = tombstone(key_id)
            await producer.send(topic, None, key=record_key)
        await producer.flush()
    finally:
        await producer.stop()


def unopened(reason: str) -> float:
    return REGISTRY.get_sample_value("projection_unopened_texts_total", {"reason": reason}) or 0.0


async def test_sealed_texts_give_the_same_rows_live_and_rebuilt_and_no_erased_text(
    settings: CommonSettings, database_url: str, conn: asyncpg.Connection
) -> None:
    log = rich_workload(seed=41, users=20, chats=30, steps=1500)
    sealed = SealedLog(log)
    lost, corrupt = sorted(sealed.live)[:2]
    await produce(settings, log)
    await produce_keys(settings, sealed, lost, corrupt)
    opens = {k: sealed.plain[k] for k in sealed.live - {lost, corrupt}}
    expected = expected_texts(log, opens)
    assert any(deleted for _, deleted in expected.values()) and sealed.shredded
    for schema, constraints in (("by_statement", True), ("in_process", False), ("in_processes", False)):
        await create_schema(conn, schema, constraints=constraints)

    before = {reason: unopened(reason) for reason in ("key_missing", "not_authentic", "shredded")}
    async with TopicReader(settings) as reader:

        async def the_reader() -> TopicReader:
            return reader

        OPENER.follow(catching_up(the_reader, settings.topic(topics.CONTENT_KEYS.name), database_url))
        try:
            await apply_by_statement(database_url, reader, settings, "by_statement")
            assert unopened("key_missing") > before["key_missing"], "the lost key is reported"
            assert unopened("not_authentic") > before["not_authentic"], "the corrupt key is reported"
            assert unopened("shredded") > before["shredded"]
            await load_all(database_url, reader, settings, "in_process", processes=1)
            await load_all(database_url, reader, settings, "in_processes", processes=2)
        finally:
            OPENER.follow(None)

    live = await contents(conn, "by_statement")
    texts = {r["id"]: (r["text"], r["deleted"]) for r in live["messages"]}
    assert texts == expected
    erased = {sealed.plain[k] for k in sealed.keys} - set(opens.values())
    assert not erased & {text for text, _ in texts.values()}, "no shredded, lost or corrupt version's text"
    for schema in ("in_process", "in_processes"):
        await finish_schema(conn, schema)
        assert differences(live, await contents(conn, schema)) == [], schema
