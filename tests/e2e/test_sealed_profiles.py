"""Sealed profiles end to end (issue 15, docs/erasure.md), with the real workers, Kafka,
PostgreSQL and Redis: a display name and a bio, registered and changed through the gateway, are
in no record of any topic of the run in clear (the events, the commands, the replies), only
sealed, each version with the account's one key `profile:<user_id>`; the REST answers and the read
model hold them plain; a refused registration's key is tombstoned; a rebuild's users checksum
equals the live one."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from config.kafka import client_options
from config.settings import GatewaySettings
from projections.users import USERS
from runtime.sealing import open_sealed
from schemas import topics
from schemas.content_keys import MalformedKeyRecord, decode_key_record
from schemas.events import ProfileUpdated, UserRegistered, decode_event
from schemas.sealed import Purpose, profile_key_id
from tests.e2e.in_process import InProcessSystem, in_process_system
from tests.kafka_tools import read_topic

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def system(
    topic_prefix: str, template_database: str, tmp_path_factory: pytest.TempPathFactory, jwt_secret: str
) -> AsyncIterator[InProcessSystem]:
    logs = tmp_path_factory.mktemp("profiles")
    async with in_process_system("profiles", topic_prefix, template_database, logs, jwt_secret) as made:
        yield made


async def every_record(settings: GatewaySettings) -> dict[str, list[Any]]:
    """Every record of every topic of the run, by topic."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(settings.topic_prefix)]
    finally:
        await admin.close()
    return {name: await read_topic(settings, name) for name in names}


def profile_keys(records: list[Any]) -> tuple[dict[str, bytes], set[str]]:
    """The profile keys of `content.keys` and the key ids tombstoned."""
    keys: dict[str, bytes] = {}
    tombstoned: set[str] = set()
    for record in records:
        try:
            key_id, content_key = decode_key_record(record.key, record.value)
        except MalformedKeyRecord:
            continue
        if not key_id.startswith("profile:"):
            continue
        if content_key is None:
            tombstoned.add(key_id)
        else:
            assert key_id not in keys, f"a second record of {key_id}"
            keys[key_id] = content_key.key_bytes
    return keys, tombstoned


async def test_a_profile_is_sealed_in_every_topic_plain_in_the_read_model_and_a_rebuild_agrees(
    system: InProcessSystem,
) -> None:
    name, password = f"p{uuid.uuid4().hex[:10]}", "correct horse"
    first_name, first_bio, second_name, second_bio, refused_name = (
        f"{word} {uuid.uuid4().hex}" for word in ("Name", "Bio", "Renamed", "Rebio", "Intruder")
    )
    status, registered = await system.call(
        "POST", "/api/v1/auth/register", json={"username": name, "password": password, "display_name": first_name}
    )
    assert status == 201 and registered["user"]["display_name"] == first_name, registered
    user_id = uuid.UUID(registered["user"]["id"])
    status, login = await system.call("POST", "/api/v1/auth/login", json={"username": name, "password": password})
    assert status == 200 and login["user"]["display_name"] == first_name
    token = login["access_token"]
    status, changed = await system.call("PATCH", "/api/v1/users/me", token, json={"bio": first_bio})
    assert status == 200 and (changed["display_name"], changed["bio"]) == (first_name, first_bio)
    status, changed = await system.call(
        "PATCH", "/api/v1/users/me", token, json={"display_name": second_name, "bio": second_bio}
    )
    assert status == 200 and (changed["display_name"], changed["bio"]) == (second_name, second_bio)
    status, refused = await system.call(
        "POST",
        "/api/v1/auth/register",
        json={"username": name.upper(), "password": password, "display_name": refused_name},
    )
    assert status == 409, refused

    status, me = await system.call("GET", "/api/v1/users/me", token)
    assert status == 200 and (me["display_name"], me["bio"]) == (second_name, second_bio)
    conn = await asyncpg.connect(system.settings.database_url)
    try:
        row = await conn.fetchrow("SELECT display_name, bio FROM users WHERE id = $1", user_id)
    finally:
        await conn.close()
    assert row is not None and (row["display_name"], row["bio"]) == (second_name, second_bio)

    by_topic = await every_record(system.settings)
    plain = [first_name, first_bio, second_name, second_bio, refused_name]
    leaks = [
        (topic, text)
        for topic, records in by_topic.items()
        for record in records
        for text in plain
        if text.encode() in (record.key or b"") + (record.value or b"")
    ]
    assert leaks == [], "no topic holds a profile field in clear"

    keys, tombstoned = profile_keys(by_topic[system.settings.topic(topics.CONTENT_KEYS.name)])
    key_id = profile_key_id(user_id)
    assert key_id in keys and key_id not in tombstoned
    refused_keys = tombstoned - {key_id}
    assert len(refused_keys) == 1 and refused_keys <= set(keys), "the refused registration's key is tombstoned"
    opened = []
    for record in by_topic[system.settings.topic(topics.USER_EVENTS.name)]:
        event = decode_event(record.value)
        payload = event.payload
        if event.aggregate_id != user_id:
            continue
        assert isinstance(payload, (UserRegistered, ProfileUpdated))
        assert payload.display_name is None and getattr(payload, "bio", None) in (None, "")
        sealed: list[tuple[str | None, Purpose]] = [(payload.sealed_display_name, "profile.display_name")]
        if isinstance(payload, ProfileUpdated):
            sealed.append((payload.sealed_bio, "profile.bio"))
        for token_text, purpose in sealed:
            if token_text is not None:
                assert token_text.split(".")[2] == key_id, "every version under the account's one key"
                opened.append(open_sealed(token_text, purpose, user_id, keys))
    assert opened == [first_name, first_bio, second_name, second_bio]

    await system.rebuild_agrees([USERS])
    status, again = await system.call("GET", "/api/v1/users/me", token)
    assert status == 200 and again == me
