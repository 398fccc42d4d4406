"""The projections worker as `make run` starts it, against real Kafka and PostgreSQL.

Events produced to the topics land in the read models, `/projections/lag` reaches 0, progress is
notified; a rebuild beside it and one after it give the same rows; a worker that cannot write
stops without losing a record; holes behind the consumer group's commits are filled.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from config.kafka import client_options
from config.settings import CommonSettings
from projections.catalogue import selected
from projections.checksum import checksums
from projections.rebuild import rebuild
from projections.runtime import Runtime
from projections.topic_reader import TopicReader
from schemas import topics
from tests.integration.test_projections_rebuild import BAD_RECORDS, create_event_topics, delete_event_topics
from tests.integration.test_projections_workload import EventLog, mixed_workload, produce
from tests.processes import ROOT, Process, free_port, start, wait_http

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

EXIT_CANNOT_APPLY = 75


@pytest.fixture
async def settings(topic_prefix: str, database_url: str) -> AsyncIterator[CommonSettings]:
    settings = await create_event_topics(topic_prefix, database_url, "worker")
    yield settings
    await delete_event_topics(settings, "messenger-projections-__assignor-__leader")


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    yield connection
    await connection.close()


class Worker:
    def __init__(self, settings: CommonSettings, tmp_path: Path) -> None:
        self.port = free_port()
        self.env = {
            "TOPIC_PREFIX": settings.topic_prefix,
            "TOPIC_PARTITIONS": str(settings.topic_partitions),
            "DATABASE_URL": settings.database_url,
            "WORKER_WEB_PORT": str(self.port),
            "WORKER_DATA_DIR": str(tmp_path / "faust"),
        }
        self.log_dir = tmp_path
        self.process: Process | None = None

    async def start(self) -> Process:
        self.process = start("projections", ["projections", "worker", "-l", "info"], self.env, self.log_dir)
        await asyncio.to_thread(wait_http, self.process, self.url("/healthz"), 90)
        return self.process

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url(path), timeout=5) as response:
            body: bytes = response.read()
            return body

    async def lag(self) -> dict[str, Any]:
        report: dict[str, Any] = json.loads(await asyncio.to_thread(self.get, "/projections/lag"))
        return report

    async def caught_up(self, records: int, timeout: float = 60.0) -> dict[str, Any]:
        """The lag report once the worker has applied all `records` of the topics."""
        deadline = time.monotonic() + timeout
        report: dict[str, Any] = {}
        while time.monotonic() < deadline:
            report = await self.lag()
            ends = sum(p["end_offset"] for proj in report["projections"].values() for p in proj["partitions"].values())
            if report["lag"] == 0 and ends == records:
                return report
            await asyncio.sleep(0.3)
        log = self.process.log()[-3000:] if self.process else ""
        raise AssertionError(f"not caught up in {timeout}s: {report}\n{log}")


async def test_the_worker_applies_the_events_reports_lag_and_matches_a_rebuild(
    settings: CommonSettings, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    notified: list[str] = []
    await conn.add_listener("projection_progress", lambda *args: notified.append(args[3]))
    worker = Worker(settings, tmp_path)
    process = await worker.start()
    try:
        log = mixed_workload(seed=31, steps=500)
        await produce(settings, log, BAD_RECORDS)
        report = await worker.caught_up(log.size() + len(BAD_RECORDS))

        live = await checksums(conn)
        assert all(c.rows > 0 for c in live)
        messages = report["projections"]["messages"]
        assert messages["topic"] == settings.topic("message.events")
        ends = {
            f"messages:{messages['topic']}:{p}": str(s["end_offset"])
            for p, s in messages["partitions"].items()
            if s["end_offset"]
        }
        assert await last_notified(notified, ends) == ends
        metrics = (await asyncio.to_thread(worker.get, "/metrics")).decode()
        assert 'projection_bad_records_total{projection="users",reason="malformed"} 1.0' in metrics
        assert 'projection_bad_records_total{projection="messages",reason="unknown_type"} 1.0' in metrics
        assert re.search(r'projection_lag_events\{partition="0",projection="messages"\} 0\.0', metrics)

        rebuilt = await rebuild_beside(worker)
        assert rebuilt.returncode == 0, rebuilt.stderr
        assert rebuilt.stdout.count("shadow = live") == 4, rebuilt.stdout
    finally:
        assert process.stop() == 0, process.log()[-3000:]

    await rebuild(settings, selected(None), progress=False)
    assert await checksums(conn) == live


async def last_notified(payloads: list[str], expected: dict[str, str], timeout: float = 5.0) -> dict[str, str]:
    """The last next_offset notified per `<projection>:<topic>:<partition>` of `expected`, once it
    is the expected one (notifications arrive a little after the commit)."""
    deadline = time.monotonic() + timeout
    while True:
        last: dict[str, str] = {}
        for payload in payloads:
            name, topic, partition, offset = payload.split(":")
            last[f"{name}:{topic}:{partition}"] = offset
        seen = {key: last.get(key, "") for key in expected}
        if seen == expected or time.monotonic() > deadline:
            return seen
        await asyncio.sleep(0.1)


async def rebuild_beside(worker: Worker) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **worker.env}
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "projections", "rebuild", "--no-progress"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def committed_to(settings: CommonSettings, topic: str) -> int:
    """How many records of `topic` the projections worker's consumer group has committed."""
    async with TopicReader(settings) as reader:
        committed = await reader.committed(settings.topic("messenger-projections"))
    return sum(offset for (t, _), offset in committed.items() if t == topic)


async def until(probe: Callable[[], Awaitable[int]], expected: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while (value := await probe()) != expected:
        assert time.monotonic() < deadline, f"still {value}, not {expected}, after {timeout}s"
        await asyncio.sleep(0.2)


async def test_a_worker_that_cannot_write_stops_and_loses_nothing(
    settings: CommonSettings, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    worker = Worker(settings, tmp_path)
    process = await worker.start()
    log = EventLog(seed=41)
    log.register("before")
    await produce(settings, log)
    await worker.caught_up(1)
    user_events = settings.topic("user.events")
    await until(lambda: committed_to(settings, user_events), 1)

    await conn.execute("ALTER TABLE users RENAME TO users_away")
    late = EventLog(seed=42)
    late.register("during")
    await produce(settings, late)
    code = await asyncio.to_thread(process.popen.wait, 60)

    assert code == EXIT_CANNOT_APPLY, process.log()[-3000:]
    assert "users projection cannot apply a batch, stopping the worker" in process.log()
    assert await committed_to(settings, user_events) == 1

    await conn.execute("ALTER TABLE users_away RENAME TO users")
    restarted = await worker.start()
    try:
        await worker.caught_up(2)
        assert sorted(r["username"] for r in await conn.fetch("SELECT username FROM users")) == ["before", "during"]
    finally:
        assert restarted.stop() == 0, restarted.log()[-3000:]


async def test_holes_behind_the_groups_commits_are_filled(settings: CommonSettings, conn: asyncpg.Connection) -> None:
    first = EventLog(seed=51)
    for name in ("a", "b", "c"):
        first.register(name)
    await produce(settings, first)
    await rebuild(settings, selected(["users"]), progress=False)
    second = EventLog(seed=52)
    for name in ("d", "e", "f", "g"):
        second.register(name)
    await produce(settings, second)
    group = settings.topic("messenger-projections")
    topic = settings.topic(topics.USER_EVENTS.name)
    await commit_end_offsets(settings, group, topic)

    runtime = Runtime(settings)
    try:
        await runtime.repair(group, {(topic, p) for p in range(settings.topic_partitions)})
        report = await runtime.lag_report()
    finally:
        await runtime.close()

    assert sorted(r["username"] for r in await conn.fetch("SELECT username FROM users")) == list("abcdefg")
    assert report["projections"]["users"]["lag"] == 0


async def commit_end_offsets(settings: CommonSettings, group: str, topic: str) -> None:
    """Commit for `group` the end of every partition of `topic`, as Faust would after acking it all."""
    consumer = AIOKafkaConsumer(**client_options(settings), group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.commit({tp: offset for tp, offset in ends.items() if offset > 0})
    finally:
        await consumer.stop()
