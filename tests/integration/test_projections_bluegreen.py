"""Blue/green rebuilds beside a running projections worker, against real Kafka and PostgreSQL.

While a client keeps writing messages and reading them back the way the gateway does (after the
NOTIFY that covers its write), a rebuild builds, compares and swaps every read model: no read sees
fewer messages than before, every write is readable once announced, and the worker goes on after
the swap. A worker whose code writes a newer version of a projection builds it at its start and
swaps it in, without writing its new code's rows into the old tables meanwhile; one older than the
live model writes nothing, and applies what it let go once the version is its own again.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from config.kafka import client_options
from config.settings import CommonSettings
from projections.rebuild_progress import read_rebuild_progress
from projections.runtime import Runtime
from projections.topic_reader import TopicReader
from projections.users import USERS
from schemas.events import encode_event
from schemas.progress import CHANNEL, ProjectionProgress
from tests.integration.test_projections_rebuild import (
    all_rows,
    apply_live,
    create_event_topics,
    delete_event_topics,
    many_messages,
    produce_entries,
    schemas_named,
)
from tests.integration.test_projections_worker import Worker
from tests.integration.test_projections_workload import EventLog, mixed_workload, produce
from tests.processes import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

READ_YOUR_WRITE_WAIT_S = 10.0
LONGEST_PAUSE_MS = 500.0
"""A bound on the live worker's longest wait for the rebuild (snapshot or swap): 3 to 30 ms measured,
about 100 ms at worst, on the 2 shared cores of the test machine; a pause held across a catch-up or
a checksum would take seconds."""


@pytest.fixture
async def settings(topic_prefix: str, database_url: str) -> AsyncIterator[CommonSettings]:
    settings = await create_event_topics(topic_prefix, database_url, "bluegreen")
    yield settings
    await delete_event_topics(settings, "messenger-projections-__assignor-__leader")


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    yield connection
    await connection.close()


@dataclass
class Client:
    """Writes messages one at a time, waits for the NOTIFY that covers each, then reads it back by id
    (read-your-writes, as the gateway does); another loop counts the messages all along."""

    settings: CommonSettings
    log: EventLog
    watermarks: dict[tuple[str, int], int] = field(default_factory=dict)
    written: int = 0
    unreadable: list[str] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def on_notify(self, conn: object, pid: int, channel: str, payload: object) -> None:
        progress = ProjectionProgress.decode(str(payload))
        key = (progress.topic, progress.partition)
        self.watermarks[key] = max(self.watermarks.get(key, 0), progress.next_offset)

    async def write_and_read(self) -> None:
        listener = await asyncpg.connect(self.settings.database_url)
        reader = await asyncpg.connect(self.settings.database_url)
        producer = AIOKafkaProducer(**client_options(self.settings), acks="all")
        await listener.add_listener(CHANNEL, self.on_notify)
        await producer.start()
        chats = list(self.log.chats)
        try:
            while not self.stop.is_set():
                chat = chats[self.written % len(chats)]
                message, _ = self.log.send(chat, next(iter(self.log.chats[chat].members)), f"live {self.written}")
                entry = self.log.entries[-1]
                topic = self.settings.topic(entry.topic.name)
                sent = await producer.send_and_wait(topic, encode_event(entry.event), key=str(entry.key).encode())
                await self.until_announced((topic, sent.partition), sent.offset)
                if await reader.fetchrow("SELECT id, chat_id, seq FROM messages WHERE id = $1", message) is None:
                    self.unreadable.append(f"{message} at {sent.partition}:{sent.offset}")
                self.written += 1
        finally:
            await producer.stop()
            await listener.close()
            await reader.close()

    async def until_announced(self, key: tuple[str, int], offset: int) -> None:
        deadline = time.monotonic() + READ_YOUR_WRITE_WAIT_S
        while self.watermarks.get(key, 0) <= offset:
            if time.monotonic() > deadline:
                raise AssertionError(f"{key}:{offset} not announced in {READ_YOUR_WRITE_WAIT_S}s")
            await asyncio.sleep(0.002)

    async def count(self) -> None:
        reader = await asyncpg.connect(self.settings.database_url)
        try:
            while not self.stop.is_set():
                self.counts.append(await reader.fetchval("SELECT count(*) FROM messages"))
                await asyncio.sleep(0.003)
        finally:
            await reader.close()


async def run_rebuild(settings: CommonSettings, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "TOPIC_PREFIX": settings.topic_prefix, "DATABASE_URL": settings.database_url}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "projections",
        "rebuild",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_a_rebuild_beside_the_worker_while_a_client_writes_and_reads(
    settings: CommonSettings, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    log = many_messages(seed=61, messages=5000)
    await produce(settings, log)
    worker = Worker(settings, tmp_path)
    process = await worker.start()
    try:
        await worker.caught_up(log.size())
        before = await conn.fetchval("SELECT count(*) FROM messages")
        client = Client(settings, log)
        tasks = [asyncio.create_task(client.write_and_read()), asyncio.create_task(client.count())]
        await asyncio.sleep(1.0)

        code, out, err = await run_rebuild(settings, "--no-progress")
        rebuilt_at = len(client.counts)
        await asyncio.sleep(1.0)
        client.stop.set()
        await asyncio.gather(*tasks)

        assert code == 0, err + out
        assert out.count("shadow = live") == 4, out
        assert out.count("swapped in") == 4, out
        pauses = [float(ms) for ms in re.findall(r"waited at most ([\d.]+) ms", out)]
        assert len(pauses) == 4 and max(pauses) < LONGEST_PAUSE_MS, out
        assert client.unreadable == [], "a write announced before it could be read"
        assert client.written > 20 and rebuilt_at < len(client.counts)
        assert min(client.counts) >= before
        assert all(a <= b for a, b in zip(client.counts, client.counts[1:], strict=False)), "a read saw fewer"
        assert await schemas_named(conn, "rebuild_") == []

        more = EventLog(seed=62)
        late = [more.register(f"late_{i}") for i in range(3)]
        await produce(settings, more)
        await worker.caught_up(log.size() + more.size())
        assert await conn.fetchval("SELECT count(*) FROM users WHERE id = ANY($1::uuid[])", late) == 3
        assert await conn.fetchval("SELECT count(*) FROM messages") == before + client.written
    finally:
        assert process.stop() == 0, process.log()[-3000:]


async def test_a_worker_of_a_newer_version_builds_it_and_swaps_it_in(
    settings: CommonSettings, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    log = mixed_workload(seed=63, steps=200)
    await produce(settings, log)
    await apply_live(settings)
    old_chats = (await all_rows(conn))["chats"]
    await conn.execute("UPDATE projection_versions SET version = 0 WHERE projection = 'chats'")
    newer = len(log.entries)
    for i in range(5):
        log.create_chat(log.users[i], [log.users[i + 1]], f"after {i}")
    await produce_entries(settings, log.entries[newer:])

    worker = Worker(settings, tmp_path)
    process = await worker.start()
    try:
        deadline = time.monotonic() + 60
        while await conn.fetchval("SELECT version FROM projection_versions WHERE projection = 'chats'") != 1:
            assert time.monotonic() < deadline, process.log()[-3000:]
            await asyncio.sleep(0.2)
        await worker.caught_up(log.size())

        assert await conn.fetchval("SELECT count(*) FROM chats") == len(old_chats) + 5
        retired = await conn.fetch("SELECT * FROM retired_chats.chats ORDER BY id")
        assert retired == old_chats, "the agent wrote nothing into the old tables while the new ones were built"
        assert await schemas_named(conn, "retired_") == ["retired_chats"], "only chats was rebuilt"
        [progress] = [p for p in await read_rebuild_progress(conn) if p.projection == "chats"]
        assert progress.phase == "done"
        assert "building version 1 in a shadow schema" in process.log()

        chat = log.create_chat(log.users[0], [log.users[2]], "after the swap")
        await produce_entries(settings, log.entries[-1:])
        await worker.caught_up(log.size())
        assert await conn.fetchval("SELECT title FROM chats WHERE id = $1", chat) == "after the swap"
        code, out, err = await run_rebuild(settings, "--only", "chats", "--no-progress")
        assert code == 0 and "chats: checksums at offsets" in out and "shadow = live" in out, err + out
    finally:
        assert process.stop() == 0, process.log()[-3000:]


async def test_a_worker_older_than_the_live_model_writes_nothing_and_later_fills_in_what_it_let_go(
    settings: CommonSettings, conn: asyncpg.Connection
) -> None:
    log = EventLog(seed=64)
    for i in range(6):
        log.register(f"early_{i}")
    await produce(settings, log)
    await conn.execute("UPDATE projection_versions SET version = $1 WHERE projection = 'users'", USERS.version + 1)
    topic = settings.topic(USERS.topic.name)
    runtime = Runtime(settings)
    try:
        async with TopicReader(settings) as reader:
            batches = [batch async for batch in reader.read(topic, await reader.spans(topic), 100)]
        for batch in batches:
            assert (await runtime.apply(USERS, batch)).applied == 0
        assert runtime.versions.is_closed(USERS)
        assert await conn.fetchval("SELECT count(*) FROM users") == 0

        await conn.execute("UPDATE projection_versions SET version = $1 WHERE projection = 'users'", USERS.version)
        deadline = time.monotonic() + 10
        while not runtime.versions.is_open(USERS):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        await runtime.apply(USERS, [])
    finally:
        await runtime.close()

    assert await conn.fetchval("SELECT count(*) FROM users") == 6, "the records let go were read again and applied"
