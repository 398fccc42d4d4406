"""The blue/green rebuild against real Kafka and PostgreSQL, without a worker: the rows the events
give swapped in, the declared tables equal to the migrated ones, checksums, `--only`, a mismatch,
a rebuild killed half-way, one rebuild per projection at a time, cached statements across a swap.

(The rebuild beside a running worker, with writes and reads going on, and a version change at a
worker's start: `test_projections_bluegreen.py`.)
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from config.kafka import client_options
from config.settings import CommonSettings
from projections import rebuild as rebuild_module
from projections.apply import apply_records
from projections.catalogue import PROJECTIONS, selected
from projections.chats import CHATS
from projections.checksum import checksums, read_model_tables
from projections.locks import try_rebuild
from projections.model import Projection, Table
from projections.rebuild import RebuildRefused, rebuild
from projections.rebuild_progress import read_rebuild_progress
from projections.shadow import create_shadow, drop_leftovers, finish_tables, shadow_schema
from projections.topic_reader import TopicReader
from projections.users import USERS
from schemas import topics
from schemas.events import encode_event
from schemas.progress import ENDED_UNFINISHED, RebuildProgress
from streams.topics import create_topics
from tests.integration.test_projections_apply import envelope
from tests.integration.test_projections_workload import EventLog, Logged, mixed_workload, produce
from tests.processes import ROOT

pytestmark = pytest.mark.integration

OFFSETS_APPLIED = "SELECT * FROM projection_offsets WHERE next_offset > 0 ORDER BY 1, 2, 3"
"""(A rebuild adds a row at 0 for every partition without one, so that its pause holds them all.)"""

KILLED_AFTER_MESSAGES = 15_000
"""Enough for the rebuild to be killed in the middle of its work (its first progress row with work done)."""
LONG_READ_S = 2.0
"""Well past the swap's lock_timeout (0.3 s)."""

BAD_RECORDS = [
    (topics.USER_EVENTS, b"\xff not json"),
    (topics.MESSAGE_EVENTS, envelope("message.reacted", {})),
]


PROJECTED_TOPICS = topics.PROJECTED_TOPICS
"""What the projections read: the event topics and the compacted `user.credentials`."""


async def create_event_topics(topic_prefix: str, database_url: str, name: str) -> CommonSettings:
    """The topics the projections read, and the dead letters a projections worker sends what it skips to."""
    settings = CommonSettings(
        topic_prefix=f"{topic_prefix}{name}.{uuid.uuid4().hex[:6]}.", database_url=database_url, topic_partitions=3
    )
    await create_topics(settings, (*PROJECTED_TOPICS, topics.DEAD_LETTERS))
    return settings


async def delete_event_topics(settings: CommonSettings, *others: str) -> None:
    """Delete the event topics of `settings` (and their dead letters), and the topics `others` (logical names) if
    they exist."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        names = [settings.topic(t.name) for t in (*PROJECTED_TOPICS, topics.DEAD_LETTERS)]
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


async def apply_live(settings: CommonSettings, projections: Sequence[Projection] = tuple(PROJECTIONS.values())) -> int:
    """Apply the topics to the live read models as a worker would (same code, offsets, NOTIFY)."""
    conn = await asyncpg.connect(settings.database_url)
    count = 0
    try:
        async with TopicReader(settings) as reader:
            for projection in projections:
                topic = settings.topic(projection.topic.name)
                async for batch in reader.read(topic, await reader.spans(topic), 500):
                    await apply_records(conn, projection, topic, batch)
                    count += len(batch)
    finally:
        await conn.close()
    return count


async def produce_entries(settings: CommonSettings, entries: Sequence[Logged]) -> None:
    producer = AIOKafkaProducer(**client_options(settings), acks="all", linger_ms=5)
    await producer.start()
    try:
        for entry in entries:
            await producer.send(
                settings.topic(entry.topic.name), encode_event(entry.event), key=str(entry.key).encode()
            )
        await producer.flush()
    finally:
        await producer.stop()


def run_command(settings: CommonSettings, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TOPIC_PREFIX": settings.topic_prefix, "DATABASE_URL": settings.database_url}
    return subprocess.run(
        [sys.executable, "-m", "projections", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


async def schemas_named(conn: asyncpg.Connection, prefix: str) -> list[str]:
    rows = await conn.fetch("SELECT nspname FROM pg_namespace WHERE nspname LIKE $1 ORDER BY 1", prefix + "%")
    return [r["nspname"] for r in rows]


async def test_a_rebuild_swaps_in_the_rows_the_events_give(settings: CommonSettings, conn: asyncpg.Connection) -> None:
    notified: list[str] = []
    log = mixed_workload(seed=21, steps=400)
    await produce(settings, log, BAD_RECORDS)
    await apply_live(settings)
    expected, expected_rows = await checksums(conn), await all_rows(conn)
    offsets_before = await conn.fetch(OFFSETS_APPLIED)
    await conn.add_listener("projection_progress", lambda *args: notified.append(args[3]))

    done = await rebuild(settings, selected(None), progress=False)

    assert {name: o.records for name, o in done.items()} == {
        "users": len(log.of(topics.USER_EVENTS)) + 1,
        "chats": len(log.of(topics.CHAT_EVENTS)),
        "messages": len(log.of(topics.MESSAGE_EVENTS)) + 1,
        "credentials": log.count(topics.USER_CREDENTIALS),
    }
    assert all(o.swapped and o.shadow_sums == o.live_sums and o.shadow_sums for o in done.values()), done
    assert await checksums(conn) == expected
    assert await all_rows(conn) == expected_rows
    assert all(c.rows > 0 for c in expected)
    assert [dict(r) for r in await conn.fetch(OFFSETS_APPLIED)] == [dict(r) for r in offsets_before]
    assert notified == [], "neither the shadow nor a swap at the same offsets announces anything"
    assert await schemas_named(conn, "rebuild_") == []
    assert await schemas_named(conn, "retired_") == [
        "retired_chats",
        "retired_credentials",
        "retired_messages",
        "retired_users",
    ]
    assert await conn.fetchval("SELECT count(*) FROM retired_messages.messages") == len(expected_rows["messages"])
    progress = await read_rebuild_progress(conn)
    assert [(p.projection, p.phase, p.error) for p in progress] == [
        (n, "done", "") for n in ("users", "chats", "messages", "credentials")
    ]
    assert await conn.fetchval("SELECT version FROM projection_versions WHERE projection = 'messages'") == 1


Catalogue = dict[str, list[tuple[object, ...]]]


async def catalogue(conn: asyncpg.Connection, schema: str) -> Catalogue:
    """Columns, constraints and indexes of the read-model tables in `schema`, the schema's name left out."""
    names = [t.name for t in read_model_tables()]
    columns = await conn.fetch(
        "SELECT table_name, ordinal_position, column_name, data_type, is_nullable, column_default"
        " FROM information_schema.columns WHERE table_schema = $1 AND table_name = ANY($2::text[])",
        schema,
        names,
    )
    constraints = await conn.fetch(
        "SELECT r.relname, c.conname, pg_get_constraintdef(c.oid) AS def"
        " FROM pg_constraint c JOIN pg_class r ON r.oid = c.conrelid JOIN pg_namespace n ON n.oid = r.relnamespace"
        " WHERE n.nspname = $1 AND r.relname = ANY($2::text[])",
        schema,
        names,
    )
    indexes = await conn.fetch(
        "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = ANY($2::text[])",
        schema,
        names,
    )

    def clean(rows: list[asyncpg.Record]) -> list[tuple[object, ...]]:
        return sorted((tuple(str(v).replace(f"{schema}.", "") for v in r) for r in rows), key=str)

    return {"columns": clean(columns), "constraints": clean(constraints), "indexes": clean(indexes)}


async def test_the_declared_tables_are_the_migrated_ones(conn: asyncpg.Connection, database_url: str) -> None:
    declared: Catalogue = {"columns": [], "constraints": [], "indexes": []}
    for projection in PROJECTIONS.values():
        await create_shadow(conn, projection)
        shadow = await asyncpg.connect(database_url, server_settings={"search_path": shadow_schema(projection)})
        try:
            await finish_tables(shadow, projection, lambda n: None)
        finally:
            await shadow.close()
        for kind, rows in (await catalogue(conn, shadow_schema(projection))).items():
            declared[kind] = sorted(declared[kind] + rows, key=str)
        await drop_leftovers(conn, projection)

    live = await catalogue(conn, "public")

    assert len(live["columns"]) == 39 and len(live["indexes"]) == 14
    assert declared == live


async def test_a_mismatch_fails_the_command_unless_repairing_and_only_what_is_asked_is_rebuilt(
    settings: CommonSettings, conn: asyncpg.Connection
) -> None:
    await produce(settings, mixed_workload(seed=24, steps=100))
    await apply_live(settings)
    await conn.execute("UPDATE users SET bio = 'changed behind the worker' WHERE username = 'user_3'")
    tampered = await checksums(conn)

    failed = await asyncio.to_thread(run_command, settings, "rebuild", "--only", "users")
    rebuilt = await asyncio.to_thread(run_command, settings, "rebuild", "--only", "chats", "--only", "messages")

    assert failed.returncode == 3, failed.stderr
    assert "users: checksums at offsets" in failed.stdout and "MISMATCH" in failed.stdout
    assert [line.split()[0] for line in failed.stdout.splitlines() if line.endswith(("shadow", "live"))] == [
        "users",
        "users",
    ]
    assert "rebuild failed: users: the shadow's checksums differ" in failed.stderr
    assert "users bulk: 100%" in failed.stderr and "events/s" in failed.stderr
    assert await checksums(conn) == tampered, "the live model is untouched"
    assert await schemas_named(conn, "rebuild_") == ["rebuild_users"], "kept for a look, dropped by the next rebuild"
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert rebuilt.stdout.count("shadow = live") == 2 and "users" not in rebuilt.stdout
    assert rebuilt.stdout.splitlines()[-1].startswith("rebuilt: chats (")
    assert ", messages (" in rebuilt.stdout.splitlines()[-1]
    progress = {p.projection: p for p in await read_rebuild_progress(conn)}
    assert progress["users"].phase == "failed" and "checksums differ" in progress["users"].error
    assert progress["chats"].phase == progress["messages"].phase == "done"
    summed = await asyncio.to_thread(run_command, settings, "checksum")
    assert summed.returncode == 0 and summed.stdout.splitlines() == [c.line() for c in await checksums(conn)]

    repaired = await asyncio.to_thread(run_command, settings, "rebuild", "--only", "users", "--repair")

    assert repaired.returncode == 0, repaired.stderr
    assert "MISMATCH" in repaired.stdout and "swapped in all the same (--repair)" in repaired.stdout
    assert await conn.fetchval("SELECT count(*) FROM users WHERE bio = 'changed behind the worker'") == 0
    assert await schemas_named(conn, "rebuild_") == []


def many_messages(seed: int, messages: int) -> EventLog:
    log = EventLog(seed)
    people = [log.register(f"talker_{i}") for i in range(6)]
    rooms = [log.create_chat(people[i % 6], [people[(i + 1) % 6], people[(i + 2) % 6]], f"room {i}") for i in range(12)]
    for n in range(messages):
        room = rooms[n % len(rooms)]
        log.send(room, next(iter(log.chats[room].members)), f"message {n}")
    return log


async def last_progress(conn: asyncpg.Connection, projection: str) -> RebuildProgress:
    [progress] = [p for p in await read_rebuild_progress(conn) if p.projection == projection]
    return progress


async def test_a_killed_rebuild_leaves_live_untouched_and_the_next_one_cleans_up(
    settings: CommonSettings, conn: asyncpg.Connection
) -> None:
    await produce(settings, many_messages(seed=25, messages=KILLED_AFTER_MESSAGES))
    await apply_live(settings)
    live = await checksums(conn)
    env = {**os.environ, "TOPIC_PREFIX": settings.topic_prefix, "DATABASE_URL": settings.database_url}
    command = [sys.executable, "-m", "projections", "rebuild", "--only", "messages", "--no-progress"]
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,  # its group: the bulk loader's worker processes die with it
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            seen = {p.projection: p for p in await read_rebuild_progress(conn)}
            if "messages" in seen and (seen["messages"].done > 0 or seen["messages"].phase != "bulk"):
                break
            assert process.returncode is None, "the rebuild ended before it could be killed"
            await asyncio.sleep(0.02)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        await asyncio.wait_for(process.wait(), 10)

    assert await checksums(conn) == live
    assert await schemas_named(conn, "rebuild_") == ["rebuild_messages"]
    progress = await last_progress(conn, "messages")
    for _ in range(50):  # the server ends the dead client's sessions (and their locks) a moment later
        if progress.phase == "failed":
            break
        await asyncio.sleep(0.1)
        progress = await last_progress(conn, "messages")
    assert (progress.phase, progress.error) == ("failed", ENDED_UNFINISHED)

    rerun = await asyncio.to_thread(run_command, settings, "rebuild", "--only", "messages", "--no-progress")

    assert rerun.returncode == 0, rerun.stderr
    assert "messages: checksums at offsets" not in rerun.stdout or "shadow = live" in rerun.stdout
    assert await schemas_named(conn, "rebuild_") == []
    assert await conn.fetchval("SELECT count(*) FROM messages") == KILLED_AFTER_MESSAGES


async def test_two_rebuilds_of_one_projection_never_run_at_once(settings: CommonSettings, database_url: str) -> None:
    await produce(settings, mixed_workload(seed=26, steps=30))
    await apply_live(settings)
    other = await asyncpg.connect(database_url)
    try:
        assert await try_rebuild(other, "users")
        with pytest.raises(RebuildRefused, match="a rebuild of the users projection is running"):
            await rebuild(settings, selected(["users"]), progress=False)
        done = await rebuild(settings, selected(["chats"]), progress=False)
        assert done["chats"].swapped
    finally:
        await other.close()
    assert (await rebuild(settings, selected(["users"]), progress=False))["users"].swapped


async def test_a_live_model_behind_the_log_is_brought_up_to_the_shadow_before_the_comparison(
    settings: CommonSettings, conn: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = mixed_workload(seed=28, steps=40)
    await produce(settings, log)
    await apply_live(settings, [USERS])
    await conn.execute("DELETE FROM projection_offsets WHERE projection = 'chats'")
    notified: list[str] = []
    await conn.add_listener("projection_progress", lambda *args: notified.append(args[3]))
    monkeypatch.setattr(rebuild_module, "LIVE_WAIT_S", 0.2)  # no worker runs: it would never catch up

    done = await rebuild(settings, selected(["chats"]), progress=False)

    assert done["chats"].swapped and done["chats"].shadow_sums == done["chats"].live_sums
    assert await conn.fetchval("SELECT count(*) FROM chats") == len({e.key for e in log.of(topics.CHAT_EVENTS)})
    assert await conn.fetchval("SELECT count(*) FROM retired_chats.chats") == len(log.chats), "applied live first"
    await asyncio.sleep(0.2)
    assert {n.split(":")[0] for n in notified} == {"chats"}, "as a worker would, with its NOTIFY"


async def test_a_long_reader_makes_the_swap_try_again_rather_than_queue_everyone_behind_it(
    settings: CommonSettings, conn: asyncpg.Connection, database_url: str
) -> None:
    await produce(settings, mixed_workload(seed=29, steps=40))
    await apply_live(settings, [CHATS])
    long_reader, prober = await asyncpg.connect(database_url), await asyncpg.connect(database_url)
    waits: list[float] = []
    stop = asyncio.Event()

    async def probe() -> None:
        while not stop.is_set():
            started = time.monotonic()
            await prober.fetchval("SELECT count(*) FROM chats")
            waits.append(time.monotonic() - started)
            await asyncio.sleep(0.01)

    try:
        async with long_reader.transaction():
            await long_reader.fetchval("SELECT count(*) FROM chats")  # holds its lock until the commit
            probing = asyncio.create_task(probe())
            rebuilding = asyncio.create_task(rebuild(settings, selected(["chats"]), progress=False))
            await asyncio.sleep(LONG_READ_S)
            assert not rebuilding.done()
        done = await rebuilding
        stop.set()
        await probing
    finally:
        await long_reader.close()
        await prober.close()

    assert done["chats"].swapped and done["chats"].swap_attempts > 1
    assert max(waits) < LONG_READ_S / 2, "a reader waited behind the swap's lock for the long reader"
    assert await conn.fetchval("SELECT count(*) FROM chats") == await conn.fetchval(
        "SELECT count(*) FROM retired_chats.chats"
    )


def with_note_column(projection: Projection) -> Projection:
    """`projection` at its next version: its first table gains a column."""
    first, *rest = projection.tables
    grown = Table(first.name, first.key, (*first.columns, "note text NOT NULL DEFAULT 'v2'"), first.after_load)
    return dataclasses.replace(projection, tables=(grown, *rest), version=projection.version + 1)


async def test_cached_statements_survive_a_swap_and_a_new_version_is_not_compared(
    settings: CommonSettings, conn: asyncpg.Connection
) -> None:
    await produce(settings, mixed_workload(seed=27, steps=60))
    await apply_live(settings, [CHATS])
    chat_id = await conn.fetchval("SELECT id FROM chats ORDER BY id LIMIT 1")
    same_columns = "SELECT id, title FROM chats WHERE id = $1"
    every_column = "SELECT * FROM chats WHERE id = $1"
    before = await conn.fetchrow(same_columns, chat_id)
    assert "note" not in dict(await conn.fetchrow(every_column, chat_id) or {})
    in_transaction = await asyncpg.connect(settings.database_url)
    await in_transaction.fetchrow(every_column, chat_id)  # prepared and cached, like conn's

    try:
        done = await rebuild(settings, [with_note_column(CHATS)], progress=False)
        async with in_transaction.transaction():
            with pytest.raises(asyncpg.InvalidCachedStatementError):
                await in_transaction.fetchrow(every_column, chat_id)
    finally:
        await in_transaction.close()

    outcome = done["chats"]
    assert outcome.swapped and not outcome.shadow_sums
    assert outcome.note.startswith("checksums not compared: the live read model is version 1, the new one version 2")
    assert await conn.fetchrow(same_columns, chat_id) == before
    assert dict(await conn.fetchrow(every_column, chat_id) or {})["note"] == "v2", "asyncpg prepares it again"
    async with conn.transaction():
        assert (await conn.fetchrow(same_columns, chat_id)) == before
    assert await conn.fetchval("SELECT version FROM projection_versions WHERE projection = 'chats'") == 2
