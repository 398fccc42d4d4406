"""Sealed profiles through the users projection and the rebuild, on real Kafka and PostgreSQL
(issue 15, docs/erasure.md): accounts of before sealing (plain fields) and sealed ones (every
version of the display name and bio under the account's one key `profile:<user_id>`), some of
them erased (the key shredded), one key lost and one corrupt, are applied by the worker's
statements and bulk-loaded by the fold: the same rows both ways, each field the text its key
opens, the empty string where the key is shredded, lost or wrong (those two reported), never an
erased text."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
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
from projections.users import USERS
from runtime.sealing import new_key, seal
from schemas import topics
from schemas.content_keys import key_record, tombstone
from schemas.events import ProfileUpdated, UserRegistered
from schemas.sealed import PROFILE_PURPOSES, ProfileField, profile_key_id
from streams.topics import create_topics
from tests.integration.test_bulk_load import apply_by_statement, contents, create_schema, differences, load_all
from tests.integration.test_projections_rebuild import delete_event_topics
from tests.integration.test_projections_workload import EventLog, produce

pytestmark = pytest.mark.integration

PARTITIONS = 3


@pytest.fixture
async def settings(topic_prefix: str, database_url: str) -> AsyncIterator[CommonSettings]:
    prefix = f"{topic_prefix}sealedprofiles.{uuid.uuid4().hex[:6]}."
    made = CommonSettings(topic_prefix=prefix, database_url=database_url, topic_partitions=PARTITIONS)
    await create_topics(made, (*topics.EVENT_TOPICS, topics.USER_CREDENTIALS, topics.CONTENT_KEYS))
    yield made
    await delete_event_topics(made)


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    yield connection
    await connection.close()


@dataclass
class Profiles:
    """A users log with the fields as the statement leaves them, each written plain or sealed."""

    log: EventLog = field(default_factory=lambda: EventLog(seed=15))
    keys: dict[uuid.UUID, bytes] = field(default_factory=dict)
    """The sealed accounts' keys."""
    written: dict[uuid.UUID, dict[ProfileField, str]] = field(default_factory=dict)
    """user -> the plain value of each field's latest version."""
    every_text: set[str] = field(default_factory=set)

    def field(self, user: uuid.UUID, name: ProfileField, text: str) -> tuple[str | None, str | None]:
        """(plain, sealed) of one field's new version."""
        self.written.setdefault(user, {})[name] = text
        self.every_text.add(text)
        key = self.keys.get(user)
        if key is None:
            return text, None
        return None, seal(key, profile_key_id(user), PROFILE_PURPOSES[name], user, text)

    def register(self, index: int, sealed: bool) -> uuid.UUID:
        user = self.log.new_id()
        if sealed:
            self.keys[user] = new_key()
        plain, token = self.field(user, "display_name", f"Name {index} {self.log.rng.random():.6f}")
        self.written[user]["bio"] = ""
        payload = UserRegistered(
            user_id=user, username=f"user_{index}", display_name=plain, sealed_display_name=token, password_hash="h"
        )
        self.log.add(topics.USER_EVENTS, user, payload)
        return user

    def change(self, user: uuid.UUID) -> None:
        rng = self.log.rng
        which = rng.choice([("display_name",), ("bio",), ("display_name", "bio")])
        name = self.field(user, "display_name", f"Renamed {rng.random():.6f}") if "display_name" in which else None
        bio = self.field(user, "bio", f"Bio {rng.random():.6f}") if "bio" in which else None
        payload = ProfileUpdated(
            user_id=user,
            display_name=name[0] if name else None,
            sealed_display_name=name[1] if name else None,
            bio=bio[0] if bio else None,
            sealed_bio=bio[1] if bio else None,
        )
        self.log.add(topics.USER_EVENTS, user, payload)


def unopened(reason: str) -> float:
    return REGISTRY.get_sample_value("projection_unopened_texts_total", {"reason": reason}) or 0.0


async def produce_keys(
    settings: CommonSettings, keys: dict[uuid.UUID, bytes], erased: set[uuid.UUID], lost: uuid.UUID, corrupt: uuid.UUID
) -> None:
    producer = AIOKafkaProducer(**client_options(settings), acks="all", linger_ms=5)
    await producer.start()
    topic = settings.topic(topics.CONTENT_KEYS.name)
    try:
        for user, key in keys.items():
            if user != lost:
                record_key, value = key_record(
                    profile_key_id(user), new_key() if user == corrupt else key, user, datetime.now(UTC)
                )
                await producer.send(topic, value, key=record_key)
        for user in erased:
            await producer.send(topic, None, key=tombstone(profile_key_id(user))[0])
        await producer.flush()
    finally:
        await producer.stop()


async def test_sealed_profiles_give_the_same_rows_live_and_rebuilt_and_no_erased_text(
    settings: CommonSettings, database_url: str, conn: asyncpg.Connection
) -> None:
    profiles = Profiles()
    users = [profiles.register(i, sealed=i % 3 != 0) for i in range(45)]
    taken = UserRegistered(user_id=profiles.log.new_id(), username="user_1", display_name="Taken", password_hash="h")
    profiles.log.add(topics.USER_EVENTS, users[1], taken)  # a taken name registered later: it holds the name now
    for _ in range(150):
        profiles.change(profiles.log.rng.choice(users))
    sealed = sorted(profiles.keys)
    erased, lost, corrupt = set(sealed[:6]), sealed[6], sealed[7]
    await produce(settings, profiles.log)
    await produce_keys(settings, profiles.keys, erased, lost, corrupt)
    unreadable = erased | {lost, corrupt}
    expected = {
        user: (fields["display_name"], fields["bio"]) if user not in unreadable else ("", "")
        for user, fields in profiles.written.items()
        if user != users[1]
    } | {taken.user_id: ("Taken", "")}
    for schema, constraints in (("by_statement", True), ("in_process", False)):
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
            await load_all(database_url, reader, settings, "in_process", processes=1, projections=[USERS])
        finally:
            OPENER.follow(None)

    live = await contents(conn, "by_statement")
    rows = {r["id"]: (r["display_name"], r["bio"]) for r in live["users"]}
    assert rows == expected
    kept = {text for pair in rows.values() for text in pair}
    erased_texts = {text for user in unreadable for text in profiles.written[user].values()}
    assert erased_texts - {""} and not (erased_texts - {""}) & kept, "no erased, lost or corrupt field's text"
    plain_users = [u for u in users if u not in profiles.keys]
    assert plain_users and all(
        rows[u] == (profiles.written[u]["display_name"], profiles.written[u]["bio"]) for u in plain_users
    )
    rebuilt = await contents(conn, "in_process")
    assert differences({"users": live["users"]}, {"users": rebuilt["users"]}) == []
