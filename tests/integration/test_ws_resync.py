"""A socket's resync from the real read models (gateway.ws.resync): what it pushes, what it skips,
and when it gives up and closes the socket instead."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from gateway.infra import read_store
from gateway.ws.connections import SLOW_CLOSE_CODE, Connection, ConnectionRegistry, OutgoingQueue
from gateway.ws.resync import RESYNC_LIMIT, Resyncer
from schemas.frames import encode_frame, message_new_frame
from tests.unit.test_ws_connections import FakeSocket, until

pytestmark = pytest.mark.integration


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    yield pool
    await pool.close()


async def chat_with(pool: asyncpg.Pool, members: list[uuid.UUID], senders: list[uuid.UUID], at: datetime) -> uuid.UUID:
    """A chat whose messages 1..len(senders) were sent by `senders`, at `at` and after."""
    chat_id = uuid.uuid4()
    for user in members:
        await pool.execute("INSERT INTO chat_members VALUES ($1, $2, 'member', $3)", chat_id, user, at)
    for seq, sender in enumerate(senders, start=1):
        await pool.execute(
            "INSERT INTO messages (id, chat_id, seq, sender_id, text, client_msg_id, created_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7)",
            uuid.uuid4(),
            chat_id,
            seq,
            sender,
            f"m{seq}",
            f"c{seq}",
            at + timedelta(milliseconds=seq),
        )
    await pool.execute(
        "INSERT INTO chat_activity SELECT chat_id, seq, id, created_at FROM messages WHERE chat_id = $1 AND seq = $2",
        chat_id,
        len(senders),
    )
    return chat_id


async def caught_up_now() -> bool:
    return True


def open_socket(user: uuid.UUID, opened_at: datetime) -> tuple[Connection, FakeSocket]:
    socket = FakeSocket()
    conn = Connection(str(user), socket, socket.abort, OutgoingQueue(1024, 512), close_grace=0.2)
    conn.opened_at = opened_at.timestamp()
    conn.start_writer()
    return conn, socket


def seqs(socket: FakeSocket) -> list[tuple[str, int]]:
    return [(f["message"]["chat_id"], f["message"]["seq"]) for f in map(json.loads, socket.sent)]


async def test_a_resync_pushes_what_the_socket_missed_once_and_skips_its_own_sends(pool: asyncpg.Pool) -> None:
    me, other = uuid.uuid4(), uuid.uuid4()
    opened = datetime.now(UTC) - timedelta(minutes=1)
    known = await chat_with(pool, [me, other], [other, other, me, other, other], opened + timedelta(seconds=1))
    fresh = await chat_with(pool, [me, other], [other, other], opened + timedelta(seconds=1))
    before_open = await chat_with(pool, [me, other], [other], opened - timedelta(minutes=5))
    not_mine = await chat_with(pool, [other], [other], opened + timedelta(seconds=1))
    conn, socket = open_socket(me, opened)
    conn.note_given(str(known), 2)
    conn.note_send("c3")
    registry = ConnectionRegistry()
    registry.add(conn)

    resyncer = Resyncer(pool, registry, caught_up_now)
    await resyncer.resync(conn)
    await until(lambda: len(socket.sent) == 4)
    got = seqs(socket)
    assert sorted(got) == sorted([(str(known), 4), (str(known), 5), (str(fresh), 1), (str(fresh), 2)])
    assert str(before_open) not in {c for c, _ in got} and str(not_mine) not in {c for c, _ in got}

    await resyncer.resync(conn)
    conn.push("a repeat", str(known), 5)
    await asyncio.sleep(0.1)
    assert len(socket.sent) == 4, "a second resync and a late repeat give nothing twice"
    await conn.close(1000, "")


async def test_a_socket_that_missed_too_much_is_closed_to_sync_itself(pool: asyncpg.Pool) -> None:
    me, other = uuid.uuid4(), uuid.uuid4()
    opened = datetime.now(UTC) - timedelta(minutes=1)
    await chat_with(pool, [me, other], [other] * (RESYNC_LIMIT + 5), opened + timedelta(seconds=1))
    conn, socket = open_socket(me, opened)
    await Resyncer(pool, ConnectionRegistry(), caught_up_now).resync(conn)
    await until(lambda: socket.closed_with is not None)
    assert socket.closed_with is not None and socket.closed_with[0] == SLOW_CLOSE_CODE
    assert socket.sent == []


async def test_a_live_push_read_right_after_a_resync_request_waits_for_it(pool: asyncpg.Pool) -> None:
    """The pub/sub listener asks for a resync and may push the next route it reads before the
    resync's task first runs: that push must wait, or it raises the socket's last `seq` given past
    the gap (3 and 4 here) and the resync finds nothing missing."""
    me, other = uuid.uuid4(), uuid.uuid4()
    opened = datetime.now(UTC) - timedelta(minutes=1)
    chat = await chat_with(pool, [me, other], [other] * 5, opened + timedelta(seconds=1))
    conn, socket = open_socket(me, opened)
    conn.note_given(str(chat), 2)
    registry = ConnectionRegistry()
    registry.add(conn)
    resyncer = Resyncer(pool, registry, caught_up_now)
    [fifth] = await read_store.messages_page(pool, chat, before=None, after=4, limit=1)

    resyncer.request(conn, "pubsub_reconnect")
    conn.push(encode_frame(message_new_frame(fifth)), str(chat), 5)
    await until(lambda: len(socket.sent) >= 3)
    await asyncio.sleep(0.1)
    assert seqs(socket) == [(str(chat), 3), (str(chat), 4), (str(chat), 5)]
    await conn.close(1000, "")


async def test_a_resync_after_a_pubsub_reconnect_waits_for_the_read_models_to_catch_up(pool: asyncpg.Pool) -> None:
    """A delivery lost while the pub/sub connection was away was published before it came back,
    but its message may reach PostgreSQL only later: the resync reads once the read models have
    caught up, and live pushes wait behind it."""
    me, other = uuid.uuid4(), uuid.uuid4()
    opened = datetime.now(UTC) - timedelta(minutes=1)
    chat = await chat_with(pool, [me, other], [other] * 2, opened + timedelta(seconds=1))
    conn, socket = open_socket(me, opened)
    conn.note_given(str(chat), 1)
    registry = ConnectionRegistry()
    registry.add(conn)
    projected = asyncio.Event()

    async def caught_up() -> bool:
        await projected.wait()
        return True

    Resyncer(pool, registry, caught_up).resync_all("pubsub_reconnect")
    await asyncio.sleep(0.2)
    assert socket.sent == [], "nothing is read before the read models caught up"
    await pool.execute(
        "INSERT INTO messages (id, chat_id, seq, sender_id, text, client_msg_id, created_at)"
        " VALUES ($1, $2, 3, $3, 'late', 'c-late', now())",
        uuid.uuid4(),
        chat,
        other,
    )
    await pool.execute(
        "UPDATE chat_activity SET last_seq = 3, last_activity_at = now() WHERE chat_id = $1",
        chat,
    )
    [third] = await read_store.messages_page(pool, chat, before=None, after=2, limit=1)
    conn.push(encode_frame(message_new_frame(third)), str(chat), 3)
    assert socket.sent == [], "a live push waits behind the resync"
    projected.set()
    await until(lambda: len(socket.sent) >= 2)
    await asyncio.sleep(0.1)
    assert seqs(socket) == [(str(chat), 2), (str(chat), 3)]
    await conn.close(1000, "")


async def test_sockets_are_closed_to_sync_themselves_when_the_read_models_do_not_catch_up(pool: asyncpg.Pool) -> None:
    me = uuid.uuid4()
    sockets = [open_socket(me, datetime.now(UTC)) for _ in range(2)]
    registry = ConnectionRegistry()
    for conn, _ in sockets:
        registry.add(conn)

    async def behind() -> bool:
        return False

    Resyncer(pool, registry, behind).resync_all("pubsub_reconnect")
    await until(lambda: all(socket.closed_with is not None for _, socket in sockets))
    assert [socket.closed_with[0] for _, socket in sockets if socket.closed_with] == [SLOW_CLOSE_CODE] * 2
