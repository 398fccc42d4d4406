"""The apply code of the projections against a real PostgreSQL: rows, idempotency, bad records."""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import orjson
import pytest
from prometheus_client import REGISTRY

from projections.apply import OffsetGap, apply_records
from projections.catalogue import PROJECTIONS
from projections.chats import CHATS
from projections.checksum import checksums
from projections.messages import MESSAGES
from projections.model import Projection, Record
from projections.rebuild import reset
from projections.users import USERS
from schemas import topics
from schemas.events import ChatCreated, encode_event
from tests.conftest import cloned_database
from tests.integration.test_projections_workload import T0, EventLog, mixed_workload

pytestmark = pytest.mark.integration

TOPIC = "apply-test.topic"


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    yield connection
    await connection.close()


async def apply_log(conn: asyncpg.Connection, projection: Projection, log: EventLog, first_offset: int = 0) -> None:
    await apply_records(conn, projection, TOPIC, log.records(projection.topic, first_offset))


async def next_offsets(conn: asyncpg.Connection, projection: Projection) -> dict[int, int]:
    rows = await conn.fetch(
        "SELECT partition, next_offset FROM projection_offsets WHERE projection = $1", projection.name
    )
    return {r["partition"]: r["next_offset"] for r in rows}


def bad_count(projection: str, reason: str) -> float:
    return (
        REGISTRY.get_sample_value("projection_bad_records_total", {"projection": projection, "reason": reason}) or 0.0
    )


async def test_users_registered_and_profile_updated(conn: asyncpg.Connection) -> None:
    log = EventLog()
    ann = log.register("ann")
    bob = log.register("bob", "Bob B")
    log.update_profile(ann, bio="hello")
    log.update_profile(ann, display_name="Annie")
    await apply_log(conn, USERS, log)

    rows = {r["username"]: dict(r) for r in await conn.fetch("SELECT * FROM users")}
    assert rows["ann"] == {
        "id": ann,
        "username": "ann",
        "display_name": "Annie",
        "bio": "hello",
        "created_at": T0 + timedelta(milliseconds=1),
    }
    assert rows["bob"]["display_name"] == "Bob B" and rows["bob"]["bio"] == ""
    hashes = {r["user_id"]: r["password_hash"] for r in await conn.fetch("SELECT * FROM user_credentials")}
    assert hashes == {ann: "$argon2id$v=19$m=65536,t=3,p=4$ann", bob: "$argon2id$v=19$m=65536,t=3,p=4$bob"}
    assert await next_offsets(conn, USERS) == {0: 4}


async def test_the_later_registration_of_a_name_holds_it_whatever_the_order_with_the_erasure(
    template_database: str,
) -> None:
    """The user agent accepts a taken name only once its holder is erased and quarantined; the two
    users' events lie in different partitions, so a projection may meet them in any order."""
    log = EventLog()
    first = log.register("ann")
    log.erase(first)
    second = log.register("ann", "Another Ann")
    registered, erasure, taken = log.entries
    for order in ([registered, erasure, taken], [registered, taken, erasure], [taken, registered, erasure]):
        async with cloned_database(template_database) as url:
            conn = await asyncpg.connect(url)
            try:
                records = [Record(0, offset, encode_event(e.event)) for offset, e in enumerate(order)]
                await apply_records(conn, USERS, TOPIC, records)
                assert [r["id"] for r in await conn.fetch("SELECT id FROM users")] == [second], order
                hashes = await conn.fetch("SELECT user_id FROM user_credentials")
                assert [r["user_id"] for r in hashes] == [second], "the erased user's legacy hash is gone"
                assert [r["user_id"] for r in await conn.fetch("SELECT user_id FROM erased_accounts")] == [first]
            finally:
                await conn.close()


async def test_chat_created_members_added_removed_and_roles(conn: asyncpg.Connection) -> None:
    log = EventLog()
    ann, bob, cid, dan = (log.new_id() for _ in range(4))
    chat = log.create_chat(ann, [bob, cid], title="trip")
    log.add_member(chat, dan)
    log.change_role(chat, bob, "admin")
    log.remove_member(chat, cid)
    direct = log.create_chat(ann, [bob])
    await apply_log(conn, CHATS, log)

    chats = {r["id"]: dict(r) for r in await conn.fetch("SELECT * FROM chats")}
    assert chats[chat] == {
        "id": chat,
        "type": "group",
        "title": "trip",
        "created_by": ann,
        "created_at": T0 + timedelta(milliseconds=1),
    }
    assert chats[direct]["type"] == "direct" and chats[direct]["title"] is None
    rows = await conn.fetch("SELECT * FROM chat_members WHERE chat_id = $1", chat)
    members = {r["user_id"]: (r["role"], r["joined_at"]) for r in rows}
    assert members == {
        ann: ("owner", T0 + timedelta(milliseconds=1)),
        bob: ("admin", T0 + timedelta(milliseconds=1)),
        dan: ("member", T0 + timedelta(milliseconds=2)),
    }


async def test_adding_a_member_twice_keeps_the_first_join_and_takes_the_new_role(conn: asyncpg.Connection) -> None:
    log = EventLog()
    ann, bob = log.new_id(), log.new_id()
    chat = log.create_chat(ann, [], title="solo")
    log.add_member(chat, bob)
    log.add_member(chat, bob, "admin")
    await apply_log(conn, CHATS, log)
    row = await conn.fetchrow("SELECT role, joined_at FROM chat_members WHERE user_id = $1", bob)
    assert row is not None
    assert (row["role"], row["joined_at"]) == ("admin", T0 + timedelta(milliseconds=2))


async def markers(conn: asyncpg.Connection, chat: uuid.UUID) -> dict[uuid.UUID, tuple[int, int]]:
    rows = await conn.fetch("SELECT user_id, seq, unread_count FROM read_markers WHERE chat_id = $1", chat)
    return {r["user_id"]: (r["seq"], r["unread_count"]) for r in rows}


async def test_messages_sent_move_activity_and_unread_counts(conn: asyncpg.Connection) -> None:
    log = EventLog()
    ann, bob, cid = (log.new_id() for _ in range(3))
    chat = log.create_chat(ann, [bob, cid], title="g")
    first, _ = log.send(chat, ann, "hi")
    log.send(chat, bob, "hello")
    last, _ = log.send(chat, ann, "how are you?")
    await apply_log(conn, MESSAGES, log)

    rows = await conn.fetch("SELECT * FROM messages ORDER BY seq")
    assert [(r["seq"], r["sender_id"], r["text"], r["client_msg_id"]) for r in rows] == [
        (1, ann, "hi", "c-1"),
        (2, bob, "hello", "c-2"),
        (3, ann, "how are you?", "c-3"),
    ]
    assert rows[0]["id"] == first and rows[0]["created_at"] == T0 + timedelta(milliseconds=2)
    assert all(r["edited_at"] is None and not r["deleted"] for r in rows)
    activity = await conn.fetchrow("SELECT * FROM chat_activity")
    assert activity is not None
    assert dict(activity) == {
        "chat_id": chat,
        "last_seq": 3,
        "last_message_id": last,
        "last_activity_at": T0 + timedelta(milliseconds=4),
    }
    assert await markers(conn, chat) == {ann: (3, 0), bob: (2, 1), cid: (0, 3)}


async def test_edit_delete_and_read(conn: asyncpg.Connection) -> None:
    log = EventLog()
    ann, bob = log.new_id(), log.new_id()
    chat = log.create_chat(ann, [bob])
    log.send(chat, bob, "mine")
    for text in ("one", "two", "three"):
        log.send(chat, ann, text)
    log.edit(chat, 2, "one, edited")
    log.delete(chat, 3)
    log.read(chat, bob, 1)
    await apply_log(conn, MESSAGES, log)

    rows = {r["seq"]: r for r in await conn.fetch("SELECT * FROM messages")}
    assert rows[2]["text"] == "one, edited" and rows[2]["edited_at"] == T0 + timedelta(milliseconds=6)
    assert rows[3]["text"] == "" and rows[3]["deleted"] and rows[3]["edited_at"] is None
    # bob has read up to 1 (his own): 2 and 4 of ann lie after it, 3 is deleted
    assert await markers(conn, chat) == {ann: (4, 0), bob: (1, 2)}
    updated = await conn.fetchval("SELECT updated_at FROM read_markers WHERE user_id = $1", bob)
    assert updated == T0 + timedelta(milliseconds=8)


async def test_a_read_never_moves_a_marker_back_and_a_deleted_message_is_not_edited(conn: asyncpg.Connection) -> None:
    log = EventLog()
    ann, bob = log.new_id(), log.new_id()
    chat = log.create_chat(ann, [bob])
    for text in ("a", "b", "c"):
        log.send(chat, ann, text)
    log.read(chat, bob, 3)
    log.read(chat, bob, 1)
    log.delete(chat, 2)
    log.entries.append(log.entries[-1])  # the same deletion twice
    message, _ = log.chats[chat].messages[1]
    await apply_log(conn, MESSAGES, log)
    await conn.execute("UPDATE messages SET deleted = true, text = '' WHERE id = $1", message)
    log.edit(chat, 1, "too late")
    await apply_log(conn, MESSAGES, log)

    assert await markers(conn, chat) == {ann: (3, 0), bob: (3, 0)}
    assert await conn.fetchval("SELECT text FROM messages WHERE id = $1", message) == ""


async def test_a_repeated_message_sent_counts_once(conn: asyncpg.Connection) -> None:
    log = EventLog()
    ann, bob = log.new_id(), log.new_id()
    chat = log.create_chat(ann, [bob])
    log.send(chat, ann, "once")
    log.entries.append(log.entries[-1])
    await apply_log(conn, MESSAGES, log)
    assert await conn.fetchval("SELECT count(*) FROM messages") == 1
    assert await markers(conn, chat) == {ann: (1, 0), bob: (0, 1)}


async def test_applying_the_same_batch_twice_changes_nothing(conn: asyncpg.Connection) -> None:
    log = mixed_workload(seed=11, steps=150)
    for projection in PROJECTIONS.values():
        await apply_log(conn, projection, log)
    before = await checksums(conn)
    offsets = {p.name: await next_offsets(conn, p) for p in PROJECTIONS.values()}
    for projection in PROJECTIONS.values():
        records = log.records(projection.topic)
        outcome = await apply_records(conn, projection, TOPIC, records)
        assert outcome.applied == 0 and outcome.next_offsets == {}
        overlapping = await apply_records(conn, projection, TOPIC, records[len(records) // 2 :])
        assert overlapping.applied == 0
    assert await checksums(conn) == before
    assert {p.name: await next_offsets(conn, p) for p in PROJECTIONS.values()} == offsets


async def test_batch_boundaries_do_not_change_the_rows(conn: asyncpg.Connection) -> None:
    """The live worker and the rebuild cut the log into different batches: same rows anyway."""
    log = mixed_workload(seed=12, steps=250)
    for projection in PROJECTIONS.values():
        await apply_log(conn, projection, log)
    whole = await checksums(conn)
    rng = random.Random(1)
    for projection in PROJECTIONS.values():
        await reset(conn, projection)
        records = log.records(projection.topic)
        start = 0
        while start < len(records):
            size = rng.choice([1, 2, 5, 17, 60])
            await apply_records(conn, projection, TOPIC, records[start : start + size])
            start += size
    assert await checksums(conn) == whole
    assert all(c.rows > 0 for c in whole)


def envelope(type_: str, payload: dict[str, object]) -> bytes:
    return orjson.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "type": type_,
            "version": 1,
            "aggregate_id": str(uuid.uuid4()),
            "occurred_at": T0.isoformat(),
            "actor_id": None,
            "correlation_id": None,
            "payload": payload,
        }
    )


async def test_bad_records_are_logged_counted_and_skipped(
    conn: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    log = EventLog()
    log.register("ann")
    log.register("bob")
    good = log.records(topics.USER_EVENTS)
    foreign = ChatCreated(chat_id=uuid.uuid4(), type="group", title="t", created_by=uuid.uuid4(), members=[])
    chat_event = encode_event(EventLog().add(topics.CHAT_EVENTS, foreign.chat_id, foreign))
    bad_values: list[bytes | None] = [
        b"{not json",
        envelope("user.exploded", {}),
        None,
        chat_event,
        envelope("user.registered", {"user_id": "not-a-uuid"}),
    ]
    records = [good[0]] + [Record(0, 1 + i, v) for i, v in enumerate(bad_values)] + [Record(0, 6, good[1].value)]
    before = {r: bad_count("users", r) for r in ("malformed", "unknown_type")}

    with caplog.at_level(logging.WARNING, logger="projections.apply"):
        outcome = await apply_records(conn, USERS, TOPIC, records)

    assert outcome.applied == 2 and outcome.next_offsets == {0: 7}
    assert sorted(r["username"] for r in await conn.fetch("SELECT username FROM users")) == ["ann", "bob"]
    assert [s.record.offset for s in outcome.skipped] == [1, 2, 3, 4, 5]
    assert [s.reason for s in outcome.skipped] == [
        "malformed",
        "unknown_type",
        "malformed",
        "unknown_type",
        "malformed",
    ]
    assert bad_count("users", "malformed") - before["malformed"] == 3
    assert bad_count("users", "unknown_type") - before["unknown_type"] == 2
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 5 and all("\n" not in line for line in lines)
    assert f"topic={TOPIC} partition=0 offset=2 reason=unknown_type" in lines[1]
    assert await next_offsets(conn, USERS) == {0: 7}


async def test_a_value_postgresql_cannot_store_is_skipped(conn: asyncpg.Connection) -> None:
    log = EventLog()
    ann, bob = log.new_id(), log.new_id()
    chat = log.create_chat(ann, [bob])
    log.send(chat, ann, "nul \x00 inside")
    log.send(chat, ann, "fine")
    before = bad_count("messages", "unstorable")
    outcome = await apply_records(conn, MESSAGES, TOPIC, log.records(topics.MESSAGE_EVENTS))
    assert [s.reason for s in outcome.skipped] == ["unstorable"]
    assert [r["text"] for r in await conn.fetch("SELECT text FROM messages")] == ["fine"]
    assert bad_count("messages", "unstorable") == before + 1


async def test_each_partition_keeps_its_own_offset_and_a_gap_is_refused(conn: asyncpg.Connection) -> None:
    log = EventLog()
    for name in ("a1", "a2", "a3"):
        log.register(name)
    values = [r.value for r in log.records(topics.USER_EVENTS)]
    await apply_records(conn, USERS, TOPIC, [Record(0, 0, values[0]), Record(2, 40, values[1])])
    assert await next_offsets(conn, USERS) == {0: 1, 2: 41}

    with pytest.raises(OffsetGap) as gap:
        await apply_records(conn, USERS, TOPIC, [Record(0, 5, values[2])], contiguous=True)
    assert (gap.value.partition, gap.value.expected, gap.value.first) == (0, 1, 5)
    assert await conn.fetchval("SELECT count(*) FROM users") == 2
    await apply_records(conn, USERS, TOPIC, [Record(2, 41, values[2])], contiguous=True)
    assert await next_offsets(conn, USERS) == {0: 1, 2: 42}


async def test_progress_is_notified_with_projection_topic_partition_and_next_offset(
    conn: asyncpg.Connection, database_url: str
) -> None:
    listener = await asyncpg.connect(database_url)
    received: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener("projection_progress", lambda *args: received.put_nowait(args[3]))
    try:
        log = EventLog()
        log.register("ann")
        log.register("bob")
        values = [r.value for r in log.records(topics.USER_EVENTS)]
        await apply_records(conn, USERS, TOPIC, [Record(3, 7, values[0]), Record(1, 0, values[1])])
        payloads = {await asyncio.wait_for(received.get(), 5), await asyncio.wait_for(received.get(), 5)}
        assert payloads == {f"users:{TOPIC}:1:1", f"users:{TOPIC}:3:8"}
        await apply_records(conn, USERS, TOPIC, [Record(3, 7, values[0])])  # nothing new: no notification
        await asyncio.sleep(0.1)
        assert received.empty()
    finally:
        await listener.close()
