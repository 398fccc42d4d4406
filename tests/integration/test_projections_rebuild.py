"""The rebuild against real Kafka and PostgreSQL: same rows as the events give, lock, command line."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from config.kafka import client_options
from config.settings import CommonSettings
from projections.apply import apply_records
from projections.catalogue import PROJECTIONS, selected
from projections.checksum import Checksum, checksums, read_model_tables
from projections.locks import hold_shared
from projections.rebuild import RebuildRefused, rebuild
from schemas import topics
from streams.topics import create_topics
from tests.integration.test_projections_apply import envelope
from tests.integration.test_projections_workload import mixed_workload, produce
from tests.processes import ROOT

pytestmark = pytest.mark.integration

BAD_RECORDS = [
    (topics.USER_EVENTS, b"\xff not json"),
    (topics.MESSAGE_EVENTS, envelope("message.reacted", {})),
]


async def create_event_topics(topic_prefix: str, database_url: str, name: str) -> CommonSettings:
    """The event topics, and the dead letters a projections worker sends what it skips to."""
    settings = CommonSettings(
        topic_prefix=f"{topic_prefix}{name}.{uuid.uuid4().hex[:6]}.", database_url=database_url, topic_partitions=3
    )
    await create_topics(settings, (*topics.EVENT_TOPICS, topics.DEAD_LETTERS))
    return settings


async def delete_event_topics(settings: CommonSettings, *others: str) -> None:
    """Delete the event topics of `settings` (and their dead letters), and the topics `others` (logical names) if
    they exist."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        names = [settings.topic(t.name) for t in (*topics.EVENT_TOPICS, topics.DEAD_LETTERS)]
        names += [settings.topic(o) for o in others]
        await admin.delete_topics([n for n in names if n in existing])
    finally:
        await admin.close()


@pytest.fixture
async def settings(topic_prefix: str, database_url: str) -> AsyncIterator[CommonSettings]:
    settings = await create_event_topics(topic_prefix, database_url, "rebuild")
    yield settings
    await delete_event_topics(settings)


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    yield connection
    await connection.close()


async def all_rows(conn: asyncpg.Connection) -> dict[str, list[asyncpg.Record]]:
    return {
        t.name: await conn.fetch(f"SELECT * FROM {t.name} ORDER BY {', '.join(t.key)}") for t in read_model_tables()
    }


async def test_a_rebuild_gives_the_rows_the_events_give(settings: CommonSettings, conn: asyncpg.Connection) -> None:
    log = mixed_workload(seed=21, steps=400)
    await produce(settings, log, BAD_RECORDS)
    for projection in PROJECTIONS.values():
        await apply_records(conn, projection, "in-memory", log.records(projection.topic))
    expected, expected_rows = await checksums(conn), await all_rows(conn)

    replayed = await rebuild(settings, selected(None), progress=False)

    assert replayed == {
        "users": len(log.of(topics.USER_EVENTS)) + 1,
        "chats": len(log.of(topics.CHAT_EVENTS)),
        "messages": len(log.of(topics.MESSAGE_EVENTS)) + 1,
    }
    assert await checksums(conn) == expected
    assert await all_rows(conn) == expected_rows
    offsets = await conn.fetch("SELECT projection, sum(next_offset) AS n FROM projection_offsets GROUP BY projection")
    assert {r["projection"]: r["n"] for r in offsets} == replayed
    assert all(c.rows > 0 for c in expected)


async def test_a_rebuild_of_one_projection_repairs_its_tables_only(
    settings: CommonSettings, conn: asyncpg.Connection
) -> None:
    await produce(settings, mixed_workload(seed=22, steps=200))
    await rebuild(settings, selected(None), progress=False)
    before = await checksums(conn)
    await conn.execute("DELETE FROM messages WHERE seq % 3 = 0")
    await conn.execute("UPDATE read_markers SET unread_count = 99")
    await conn.execute("UPDATE users SET bio = 'tampered'")

    await rebuild(settings, selected(["messages"]), progress=False)

    after = {c.table: c for c in await checksums(conn)}
    assert [after[c.table] for c in before if c.table not in ("users",)] == [c for c in before if c.table != "users"]
    assert after["users"] != next(c for c in before if c.table == "users")


async def test_a_rebuild_is_refused_while_a_worker_holds_the_lock(
    settings: CommonSettings, conn: asyncpg.Connection, database_url: str
) -> None:
    await produce(settings, mixed_workload(seed=23, steps=20))
    worker_lock = await hold_shared(database_url)
    try:
        with pytest.raises(RebuildRefused, match="stop it first"):
            await rebuild(settings, selected(None), progress=False)
        assert await conn.fetchval("SELECT count(*) FROM users") == 0
    finally:
        await worker_lock.close()
    await rebuild(settings, selected(["users"]), progress=False)
    assert await conn.fetchval("SELECT count(*) FROM users") == 10


def run_command(settings: CommonSettings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TOPIC_PREFIX": settings.topic_prefix, "DATABASE_URL": settings.database_url}
    return subprocess.run(
        [sys.executable, "-m", "projections", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_the_commands_show_progress_and_print_checksums(
    settings: CommonSettings, conn: asyncpg.Connection
) -> None:
    await produce(settings, mixed_workload(seed=24, steps=100))

    rebuilt = await asyncio.to_thread(run_command, settings, "rebuild", "--only", "users", "--only", "chats")
    summed = await asyncio.to_thread(run_command, settings, "checksum")

    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "users: 100%" in rebuilt.stderr and "chats: 100%" in rebuilt.stderr and "events/s" in rebuilt.stderr
    assert "messages" not in rebuilt.stderr
    lines = [Checksum.line(c) for c in await checksums(conn)]
    assert rebuilt.stdout.splitlines()[0].startswith("rebuilt: users (")
    assert rebuilt.stdout.splitlines()[1:] == lines
    assert summed.returncode == 0 and summed.stdout.splitlines() == lines
