"""Rebuild speed on a log of its own: 1,000,000 message events (and the users and chats they need).

The stage never touches the running system: it writes the log to topics under a private prefix
and rebuilds into a private database, both dropped at the end.

1. **log**: users, chats (direct and groups) and the message events (sends, reads, edits,
   deletions), made with the schemas' models and encoded as the streams encode them, produced in
   whole record batches to the partitions their keys give.
2. **bulk**: the bulk loader alone (`projections.bulk_load`) into empty shadow tables (columns and
   primary keys), every projection, with a progress bar; then the constraints and indexes.
3. **command**: `python -m projections rebuild` as an operator runs it, beside a live model that
   is caught up (loaded first, untimed): bulk, indexes, catch-up, checksums of both sides, swap,
   and the process's start, all timed.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import DefaultPartitioner
from tqdm import tqdm

from config.kafka import client_options
from config.settings import CommonSettings
from projections.bulk_load import bulk_load
from projections.catalogue import PROJECTIONS
from projections.migrate import migrate
from projections.model import Projection
from projections.topic_reader import TopicReader
from schemas import topics
from schemas.credentials import Credential, credential_record
from schemas.events import (
    ChatCreated,
    MessageDeleted,
    MessageEdited,
    MessageSent,
    Payload,
    ReadMarkerMoved,
    UserRegistered,
    encode_event,
    new_event,
)
from schemas.models import Member
from streams.topics import create_topics

REBUILT = re.compile(r"(\w+) \((\d+) records\)")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
TEXT = "ok see you at the station tomorrow morning did you get the files I sent yesterday about the release the build"
WORDS = TEXT.split()


@dataclass(frozen=True)
class LogShape:
    message_events: int = 1_000_000
    users: int = 10_000
    direct_chats: int = 5_000
    groups: int = 1_000
    group_sizes: tuple[int, int] = (3, 20)
    mix: tuple[tuple[str, float], ...] = (("sent", 0.80), ("read", 0.12), ("edited", 0.05), ("deleted", 0.03))

    def scaled(self, message_events: int) -> LogShape:
        """The same mix for another number of message events (users and chats in proportion)."""
        factor = message_events / self.message_events
        return LogShape(
            message_events,
            max(4, int(self.users * factor)),
            max(2, int(self.direct_chats * factor)),
            max(1, int(self.groups * factor)),
            self.group_sizes,
            self.mix,
        )


@dataclass
class ChatLog:
    members: list[uuid.UUID]
    last_seq: int = 0
    live: list[tuple[int, uuid.UUID]] = field(default_factory=list)
    """(seq, message_id) of the messages not deleted."""


Produced = tuple[topics.TopicSpec, bytes, bytes]
"""(topic, key, value)."""


class LogMaker:
    def __init__(self, shape: LogShape, seed: int = 12) -> None:
        self.shape = shape
        self.rng = random.Random(seed)
        self.clock = T0

    def new_id(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    def event(self, topic: topics.TopicSpec, key: uuid.UUID, payload: Payload, actor: uuid.UUID | None) -> Produced:
        self.clock += timedelta(microseconds=200)
        event = new_event(
            payload,
            aggregate_id=key,
            event_id=self.new_id(),
            actor_id=actor,
            correlation_id=None,
            occurred_at=self.clock,
        )
        return topic, str(key).encode(), encode_event(event)

    def text(self) -> str:
        return " ".join(self.rng.choices(WORDS, k=self.rng.randint(3, 20)))

    def records(self) -> Iterator[Produced]:
        shape, rng = self.shape, self.rng
        users = [self.new_id() for _ in range(shape.users)]
        for i, user in enumerate(users):
            registered = UserRegistered(user_id=user, username=f"user_{i}", display_name=f"User {i}")
            yield self.event(topics.USER_EVENTS, user, registered, user)
            credential = Credential(user_id=user, password_hash=f"$argon2id$v=19$bench{i}", changed_at=self.clock)
            key, value = credential_record(credential)
            assert value is not None
            yield topics.USER_CREDENTIALS, key, value
        chats: list[tuple[uuid.UUID, ChatLog]] = []
        for i in range(shape.direct_chats + shape.groups):
            size = 2 if i < shape.direct_chats else rng.randint(*shape.group_sizes)
            members = rng.sample(users, size)
            chat = self.new_id()
            created = ChatCreated(
                chat_id=chat,
                type="direct" if size == 2 else "group",
                title=None if size == 2 else f"group {i}",
                created_by=members[0],
                members=[
                    Member(user_id=u, role="member" if size == 2 or n else "owner") for n, u in enumerate(members)
                ],
            )
            yield self.event(topics.CHAT_EVENTS, chat, created, members[0])
            chats.append((chat, ChatLog(members)))
        kinds, weights = zip(*shape.mix, strict=True)
        for kind in rng.choices(kinds, weights, k=shape.message_events):
            chat, state = chats[rng.randrange(len(chats))]
            yield self.message_event(kind if state.live else "sent", chat, state)

    def message_event(self, kind: str, chat: uuid.UUID, state: ChatLog) -> Produced:
        rng = self.rng
        user = rng.choice(state.members)
        payload: Payload
        if kind == "sent":
            state.last_seq += 1
            message = self.new_id()
            payload = MessageSent(
                message_id=message,
                chat_id=chat,
                seq=state.last_seq,
                sender_id=user,
                text=self.text(),
                client_msg_id=f"c{state.last_seq}",
                recipients=state.members,
            )
            state.live.append((state.last_seq, message))
        elif kind == "read":
            payload = ReadMarkerMoved(
                chat_id=chat, user_id=user, seq=rng.randint(max(0, state.last_seq - 30), state.last_seq)
            )
        elif kind == "edited":
            seq, message = state.live[-rng.randint(1, min(10, len(state.live)))]
            payload = MessageEdited(message_id=message, chat_id=chat, seq=seq, text=self.text())
        else:
            seq, message = state.live.pop(rng.randrange(len(state.live)))
            payload = MessageDeleted(message_id=message, chat_id=chat, seq=seq, deleted_by=user)
        return self.event(topics.MESSAGE_EVENTS, chat, payload, user)


async def produce_log(settings: CommonSettings, records: Iterator[Produced], on_record: Callable[[], object]) -> None:
    """Every record to the partition its key gives (as a producer's default partitioner would), in
    whole batches of about 1 MB."""
    producer = AIOKafkaProducer(**client_options(settings), acks="all", max_batch_size=1_000_000, linger_ms=50)
    await producer.start()
    partitions = list(range(settings.topic_partitions))
    partition_of: dict[bytes, int] = {}
    batches: dict[tuple[str, int], Any] = {}
    sent: list[asyncio.Future[Any]] = []
    try:
        for topic, key, value in records:
            partition = partition_of.get(key)
            if partition is None:
                partition = partition_of[key] = DefaultPartitioner()(key, partitions, partitions)
            name = settings.topic(topic.name)
            batch = batches.get((name, partition))
            if batch is None:
                batch = batches[(name, partition)] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:
                sent.append(await producer.send_batch(batch, name, partition=partition))
                batch = batches[(name, partition)] = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)
            on_record()
        for (name, partition), batch in batches.items():
            sent.append(await producer.send_batch(batch, name, partition=partition))
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


@dataclass(frozen=True)
class Private:
    """The stage's own topics and database."""

    settings: CommonSettings
    admin_url: str
    database: str


async def create_private(settings: CommonSettings, admin_url: str) -> Private:
    tag = uuid.uuid4().hex[:8]
    database = f"bench_rebuild_{tag}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    url = admin_url.rsplit("/", 1)[0] + "/" + database
    await migrate(url)
    private = settings.model_copy(update={"topic_prefix": f"bench.rebuild.{tag}.", "database_url": url})
    await create_topics(private, topics.PROJECTED_TOPICS)
    return Private(private, admin_url, database)


async def drop_private(private: Private) -> None:
    admin = AIOKafkaAdminClient(**client_options(private.settings))
    await admin.start()
    try:
        await admin.delete_topics([private.settings.topic(t.name) for t in topics.PROJECTED_TOPICS])
    finally:
        await admin.close()
    conn = await asyncpg.connect(private.admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{private.database}" WITH (FORCE)')
    finally:
        await conn.close()


def shadow_ddl(projection: Projection, schema: str) -> list[str]:
    """The tables of a rebuild's shadow before its load: columns, checks and primary keys."""
    statements = [f"CREATE SCHEMA {schema}"]
    for table in projection.tables:
        statements.append(
            f"CREATE TABLE {schema}.{table.name} (LIKE public.{table.name} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
        )
        statements.append(f"ALTER TABLE {schema}.{table.name} ADD PRIMARY KEY ({', '.join(table.key)})")
    statements.append(f"CREATE TABLE {schema}.projection_offsets (LIKE public.projection_offsets INCLUDING ALL)")
    return statements


def index_ddl(projection: Projection, schema: str) -> list[str]:
    """The unique constraints and indexes the live tables have beyond their primary keys."""
    return [
        f"CREATE UNIQUE INDEX ON {schema}.{name} ({columns})" if unique else f"CREATE INDEX ON {schema}.{name} {rest}"
        for name, unique, columns, rest in LIVE_EXTRAS
        if name in projection.table_names
    ]


LIVE_EXTRAS = (
    ("users", True, "username", ""),
    ("users", False, "", "(username text_pattern_ops)"),
    ("chat_members", False, "", "(user_id)"),
    ("messages", True, "chat_id, seq", ""),
)


async def load_projections(
    url: str, settings: CommonSettings, schema_of: Callable[[Projection], str], desc: str, progress: bool
) -> tuple[int, float]:
    """Bulk-load every projection; (records, seconds)."""
    async with TopicReader(settings) as reader:
        spans = {p.name: await reader.spans(settings.topic(p.topic.name)) for p in PROJECTIONS.values()}
        total = sum(s.size for by in spans.values() for s in by.values())
        started = time.perf_counter()
        with tqdm(total=total, desc=desc, unit=" events", unit_scale=True, disable=not progress, smoothing=0.1) as bar:
            for p in PROJECTIONS.values():
                await bulk_load(
                    url,
                    reader,
                    p,
                    settings.topic(p.topic.name),
                    schema_of(p),
                    spans[p.name],
                    bar.update,
                )
        return total, time.perf_counter() - started


async def run_ddl(url: str, statements: list[str]) -> float:
    conn = await asyncpg.connect(url)
    started = time.perf_counter()
    try:
        for ddl in statements:
            await conn.execute(ddl)
    finally:
        await conn.close()
    return time.perf_counter() - started


def run_command(root: Path, private: Private, progress: bool) -> dict[str, Any]:
    env = {**os.environ, "DATABASE_URL": private.settings.database_url, "TOPIC_PREFIX": private.settings.topic_prefix}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "projections", "rebuild", *([] if progress else ["--no-progress"])],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=None if progress else subprocess.PIPE,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        return {"error": f"exit {done.returncode}: {(done.stderr or '')[-500:]}{done.stdout[-500:]}"}
    counts = {name: int(n) for name, n in REBUILT.findall(done.stdout)}
    events = sum(counts.values())
    return {
        "events": events,
        "seconds": round(seconds, 2),
        "events_per_s": round(events / seconds, 1),
        "by_projection": counts,
        "output": done.stdout.strip().splitlines(),
    }


async def measure_rebuild(
    root: Path,
    settings: CommonSettings,
    admin_url: str,
    message_events: int,
    progress: bool = True,
    command: bool = True,
) -> dict[str, Any]:
    shape = LogShape().scaled(message_events)
    private = await create_private(settings, admin_url)
    result: dict[str, Any] = {
        "log": {
            "message_events": shape.message_events,
            "users": shape.users,
            "chats": shape.direct_chats + shape.groups,
            "partitions": settings.topic_partitions,
        },
        "prefix": private.settings.topic_prefix,
        "database": private.database,
    }
    try:
        started = time.perf_counter()
        expected = shape.users + shape.direct_chats + shape.groups + shape.message_events
        with tqdm(total=expected, desc="log", unit=" events", unit_scale=True, disable=not progress) as bar:
            await produce_log(private.settings, LogMaker(shape).records(), lambda: bar.update(1))
        result["log"]["seconds"] = round(time.perf_counter() - started, 1)
        url = private.settings.database_url
        for p in PROJECTIONS.values():
            await run_ddl(url, shadow_ddl(p, f"bulk_{p.name}"))
        events, seconds = await load_projections(url, private.settings, lambda p: f"bulk_{p.name}", "bulk", progress)
        indexes = await run_ddl(url, [d for p in PROJECTIONS.values() for d in index_ddl(p, f"bulk_{p.name}")])
        result["bulk"] = {
            "events": events,
            "seconds": round(seconds, 2),
            "events_per_s": round(events / seconds, 1),
            "indexes_seconds": round(indexes, 2),
            "events_per_s_with_indexes": round(events / (seconds + indexes), 1),
        }
        if command:
            await load_projections(url, private.settings, lambda p: "public", "live model (untimed)", progress)
            result["command"] = await asyncio.to_thread(run_command, root, private, progress)
        result["events_per_s"] = result.get("command", result["bulk"]).get("events_per_s")
    finally:
        await drop_private(private)
    return result
