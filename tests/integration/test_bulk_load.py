"""The bulk loader against real Kafka and PostgreSQL: the rows it COPYs are the rows the statements give.

A log of every event type over four partitions (sends, repeated events, edits, deletions, edits
and deletions after a deletion, reads by members and by the sender, members coming and going, bad
records) is applied once by the statement path (`apply_records`, the worker's code) into one
schema, and bulk-loaded into others: in this process, in two processes, and by the statement
when no fold models it. Every table must hold the same rows; the unique constraints the shadow
gets after its load must hold.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from config.kafka import client_options
from config.settings import CommonSettings
from projections.apply import apply_records
from projections.bulk_load import bulk_load, drop_keys, keys_restored, primary_keys, truncate
from projections.catalogue import PROJECTIONS
from projections.checksum import read_model_tables
from projections.messages import MESSAGES
from projections.model import Projection
from projections.topic_reader import TopicReader
from schemas import topics
from schemas.events import MessageDeleted, MessageEdited, MessageSent, UserRegistered, encode_event
from streams.topics import create_topics
from tests.integration.test_projections_apply import envelope
from tests.integration.test_projections_rebuild import PROJECTED_TOPICS, delete_event_topics
from tests.integration.test_projections_workload import T0, EventLog, produce

pytestmark = pytest.mark.integration

PARTITIONS = 4
UNIQUE_AFTER_LOAD = {
    "messages": "ALTER TABLE {schema}.messages ADD UNIQUE (chat_id, seq)",
    "users": "ALTER TABLE {schema}.users ADD UNIQUE (username)",
}
"""What the rebuild adds once the shadow is loaded: a fold that broke them would fail here."""


def rich_workload(seed: int, users: int = 40, chats: int = 60, steps: int = 4000) -> EventLog:
    """A valid log with the corners of the messages statement hit often."""
    log = EventLog(seed)
    rng = log.rng
    people = [log.register(f"user_{i}", legacy=i % 2 == 0) for i in range(users)]
    for i, user in enumerate(rng.sample(people, users // 4)):
        log.change_password(user, f"$argon2id$v=19$m=19456,t=2,p=1$changed{i}")
    log.credential(people[1], None)
    taken = UserRegistered(user_id=log.new_id(), username="user_0", display_name="Taken", password_hash="x")
    log.add(topics.USER_EVENTS, people[0], taken)  # keyed as user_0's registration: after it, in its partition
    for user in rng.sample(people, users // 4):
        log.update_profile(user, bio=f"bio {rng.random():.4f}")
    rooms = []
    for i in range(chats):
        creator, *others = rng.sample(people, 2 if i % 3 == 0 else rng.randint(3, 7))
        rooms.append(log.create_chat(creator, others, title=None if i % 3 == 0 else f"room {i}"))
    deleted: dict[uuid.UUID, list[tuple[int, uuid.UUID]]] = {room: [] for room in rooms}
    actions = ["send"] * 10 + ["read"] * 4 + ["own read", "edit", "edit", "delete", "again", "after delete"]
    actions += ["repeat", "add", "remove", "role"]
    for _ in range(steps):
        chat = rng.choice(rooms)
        state = log.chats[chat]
        members = list(state.members)
        action = rng.choice(actions)
        if action == "send" or not state.messages:
            log.send(chat, rng.choice(members), f"message {state.last_seq + 1} {rng.random():.6f}")
        elif action == "read":
            log.read(chat, rng.choice(members), rng.randint(0, state.last_seq))
        elif action == "own read":
            _, sender = state.messages[max(state.messages)]
            log.read(chat, sender, rng.randint(0, state.last_seq))
        elif action == "edit":
            log.edit(chat, rng.choice(list(state.messages)), f"edited {rng.random():.6f}")
        elif action == "delete":
            seq = rng.choice(list(state.messages))
            deleted[chat].append((seq, state.messages[seq][0]))
            log.delete(chat, seq)
        elif action in ("again", "after delete") and deleted[chat]:
            seq, message = rng.choice(deleted[chat])
            if action == "again":
                log.add(
                    topics.MESSAGE_EVENTS,
                    chat,
                    MessageDeleted(message_id=message, chat_id=chat, seq=seq, deleted_by=members[0]),
                )
            else:
                log.add(
                    topics.MESSAGE_EVENTS,
                    chat,
                    MessageEdited(message_id=message, chat_id=chat, seq=seq, text="too late"),
                )
        elif action == "repeat":
            log.entries.append(
                rng.choice([e for e in log.entries[-200:] if e.topic == topics.MESSAGE_EVENTS] or log.entries[-1:])
            )
        elif action == "add":
            outsiders = [u for u in people if u not in state.members]
            if outsiders:
                log.add_member(chat, rng.choice(outsiders))
        elif action == "remove" and len(members) > 2:
            log.remove_member(chat, members[-1])
        elif action == "role" and len(members) > 1:
            log.change_role(chat, members[-1], rng.choice(["admin", "member"]))
    for user in rng.sample(people[1:], 3):
        log.erase(user)
    log.erase(people[1])
    log.register("user_1")  # an erased account's name again, its quarantine over
    log.update_profile(people[1], bio="after the erasure")  # changes no row
    return log


def bad_records(log: EventLog) -> list[tuple[topics.TopicSpec, bytes]]:
    chat = next(iter(log.chats))
    nul = MessageSent(
        message_id=uuid.uuid4(), chat_id=chat, seq=10**6, sender_id=log.users[0], text="nul \x00", client_msg_id="n",
        recipients=[log.users[0]],
    )  # fmt: skip
    unstorable = EventLog()
    unstorable.add(topics.MESSAGE_EVENTS, chat, nul)
    return [
        (topics.MESSAGE_EVENTS, b"\xff not json"),
        (topics.MESSAGE_EVENTS, envelope("message.reacted", {})),
        (topics.MESSAGE_EVENTS, encode_event(unstorable.entries[0].event)),
        (topics.USER_EVENTS, b"{}"),
        (topics.CHAT_EVENTS, envelope("chat.archived", {})),
    ]


@pytest.fixture
async def settings(topic_prefix: str, database_url: str) -> AsyncIterator[CommonSettings]:
    prefix = f"{topic_prefix}bulk.{uuid.uuid4().hex[:6]}."
    settings = CommonSettings(topic_prefix=prefix, database_url=database_url, topic_partitions=PARTITIONS)
    await create_topics(settings, PROJECTED_TOPICS)
    yield settings
    await delete_event_topics(settings)


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    yield connection
    await connection.close()


async def create_schema(conn: asyncpg.Connection, schema: str, *, constraints: bool) -> None:
    """Every read model's table in `schema`: like the live ones (`constraints`), or as a rebuild's
    shadow before its load (columns, checks and primary keys only)."""
    await conn.execute(f"CREATE SCHEMA {schema}")
    for table in read_model_tables():
        like = "INCLUDING ALL" if constraints else "INCLUDING DEFAULTS INCLUDING CONSTRAINTS"
        await conn.execute(f"CREATE TABLE {schema}.{table.name} (LIKE public.{table.name} {like})")
        if not constraints:
            await conn.execute(f"ALTER TABLE {schema}.{table.name} ADD PRIMARY KEY ({', '.join(table.key)})")
    await conn.execute(f"CREATE TABLE {schema}.projection_offsets (LIKE public.projection_offsets INCLUDING ALL)")


async def finish_schema(conn: asyncpg.Connection, schema: str) -> None:
    for ddl in UNIQUE_AFTER_LOAD.values():
        await conn.execute(ddl.format(schema=schema))


async def apply_by_statement(database_url: str, reader: TopicReader, settings: CommonSettings, schema: str) -> None:
    """The worker's way, one statement per event, into `schema`."""
    conn = await asyncpg.connect(database_url, server_settings={"search_path": schema})
    try:
        for projection in PROJECTIONS.values():
            topic = settings.topic(projection.topic.name)
            async with aclosing(reader.read(topic, await reader.spans(topic), 700)) as batches:
                async for batch in batches:
                    await apply_records(conn, projection, topic, batch)
    finally:
        await conn.close()


async def load_all(
    database_url: str,
    reader: TopicReader,
    settings: CommonSettings,
    schema: str,
    processes: int,
    projections: list[Projection] | None = None,
) -> dict[str, int]:
    read = {}
    for projection in projections or list(PROJECTIONS.values()):
        topic = settings.topic(projection.topic.name)
        progress: list[int] = []
        read[projection.name] = await bulk_load(
            database_url, reader, projection, topic, schema, await reader.spans(topic), progress.append,
            processes=processes,
        )  # fmt: skip
        assert sum(progress) == read[projection.name]
    return read


async def contents(conn: asyncpg.Connection, schema: str) -> dict[str, list[asyncpg.Record]]:
    return {
        t.name: await conn.fetch(f"SELECT * FROM {schema}.{t.name} ORDER BY {', '.join(t.key)}")
        for t in read_model_tables()
    }


async def offsets(conn: asyncpg.Connection, schema: str) -> set[tuple[str, str, int, int]]:
    rows = await conn.fetch(f"SELECT projection, topic, partition, next_offset FROM {schema}.projection_offsets")
    return {(r["projection"], r["topic"], r["partition"], r["next_offset"]) for r in rows}


def differences(expected: dict[str, list[asyncpg.Record]], loaded: dict[str, list[asyncpg.Record]]) -> list[str]:
    """The first rows that differ, per table, for a readable failure."""
    found = []
    for table, rows in expected.items():
        if rows != loaded[table]:
            wrong = [(dict(a), dict(b)) for a, b in zip(rows, loaded[table], strict=False) if a != b][:2]
            found.append(f"{table}: {len(rows)} rows expected, {len(loaded[table])} loaded; first differences {wrong}")
    return found


async def test_bulk_load_gives_the_rows_the_statements_give(
    settings: CommonSettings, database_url: str, conn: asyncpg.Connection
) -> None:
    log = rich_workload(seed=31)
    await produce(settings, log, bad_records(log))
    for schema, constraints in (("by_statement", True), ("in_process", False), ("in_processes", False)):
        await create_schema(conn, schema, constraints=constraints)

    async with TopicReader(settings) as reader:
        await apply_by_statement(database_url, reader, settings, "by_statement")
        one = await load_all(database_url, reader, settings, "in_process", processes=1)
        two = await load_all(database_url, reader, settings, "in_processes", processes=2)
        spans = await reader.spans(settings.topic(topics.MESSAGE_EVENTS.name))

    expected = await contents(conn, "by_statement")
    assert all(expected.values()) and any(r["deleted"] for r in expected["messages"])
    assert len(spans) == PARTITIONS and all(s.size > 0 for s in spans.values())
    for schema in ("in_process", "in_processes"):
        keys = [k for p in PROJECTIONS.values() for k in await primary_keys(conn, schema, p)]
        assert sorted(k.name for k in keys) == sorted(f"{t.name}_pkey" for t in read_model_tables()), "put back"
        await finish_schema(conn, schema)
        assert differences(expected, await contents(conn, schema)) == [], schema
        assert await offsets(conn, schema) == await offsets(conn, "by_statement")
    assert (
        one
        == two
        == {p.name: log.count(p.topic) + extra for p, extra in zip(PROJECTIONS.values(), (1, 1, 3, 0), strict=True)}
    )


async def test_a_chat_in_two_partitions_is_folded_again_in_one_process(
    settings: CommonSettings, database_url: str, conn: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    """Its events in two shares' partitions: the shares' COPYs meet, the tables are emptied, and the
    load is done again in one process. (A repeated `message.sent` gives the same rows in any order.)"""
    log = rich_workload(seed=32, chats=8, steps=600)
    await produce(settings, log)
    topic = settings.topic(topics.MESSAGE_EVENTS.name)
    sent = next(e for e in log.entries if e.event.type == "message.sent")
    producer = AIOKafkaProducer(**client_options(settings), acks="all")
    await producer.start()
    try:
        for partition in range(PARTITIONS):
            await producer.send_and_wait(topic, encode_event(sent.event), key=b"elsewhere", partition=partition)
    finally:
        await producer.stop()
    for schema, constraints in (("by_statement", True), ("in_processes", False)):
        await create_schema(conn, schema, constraints=constraints)

    async with TopicReader(settings) as reader:
        await apply_by_statement(database_url, reader, settings, "by_statement")
        with caplog.at_level(logging.WARNING, logger="projections.bulk_load"):
            await load_all(database_url, reader, settings, "in_processes", processes=2, projections=[MESSAGES])

    assert any("folding again in one process" in r.getMessage() for r in caplog.records)
    expected = await contents(conn, "by_statement")
    loaded = await contents(conn, "in_processes")
    for table in ("messages", "chat_activity", "read_markers"):
        assert loaded[table] == expected[table], table


async def test_a_projection_no_fold_models_is_loaded_by_its_statement(
    settings: CommonSettings, database_url: str, conn: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    log = rich_workload(seed=33, chats=10, steps=500)
    await produce(settings, log, bad_records(log))
    changed = dataclasses.replace(MESSAGES, statement=MESSAGES.statement + "\n")
    for schema, constraints in (("by_statement", True), ("changed", True)):
        await create_schema(conn, schema, constraints=constraints)

    async with TopicReader(settings) as reader:
        await apply_by_statement(database_url, reader, settings, "by_statement")
        with caplog.at_level(logging.WARNING, logger="projections.bulk_load"):
            read = await load_all(database_url, reader, settings, "changed", processes=1, projections=[changed])

    assert any("no fold models its statement" in r.getMessage() for r in caplog.records)
    assert read == {"messages": len(log.of(topics.MESSAGE_EVENTS)) + 3}
    expected = await contents(conn, "by_statement")
    loaded = await contents(conn, "changed")
    for table in ("messages", "chat_activity", "read_markers"):
        assert loaded[table] == expected[table], table
    assert await offsets(conn, "changed") == {o for o in await offsets(conn, "by_statement") if o[0] == "messages"}


async def test_a_key_two_shares_wrote_shows_when_the_keys_come_back(conn: asyncpg.Connection) -> None:
    """Two shares COPY without the primary keys: a message id in both (two chats of two partitions
    sharing one) makes putting the key back fail, which sends the load back to one process."""
    await create_schema(conn, "shared", constraints=False)
    keys = await primary_keys(conn, "shared", MESSAGES)
    assert {k.table for k in keys} == {"messages", "chat_activity", "read_markers"}
    await drop_keys(conn, "shared", keys)
    row = (uuid.uuid4(), uuid.uuid4(), 1, uuid.uuid4(), "t", "c", T0)
    columns = ["id", "chat_id", "seq", "sender_id", "text", "client_msg_id", "created_at"]
    await conn.copy_records_to_table("messages", records=[row, row], columns=columns, schema_name="shared")

    assert not await keys_restored(conn, "shared", keys)

    await truncate(conn, MESSAGES, "shared")
    assert await keys_restored(conn, "shared", keys)
    assert {k.name for k in await primary_keys(conn, "shared", MESSAGES)} == {k.name for k in keys}
