"""The outgoing queue of a socket and the registry: backpressure without one socket slowing another."""

from __future__ import annotations

import asyncio

import pytest

from gateway.ws.connections import (
    SLOW_CLOSE_CODE,
    Connection,
    ConnectionRegistry,
    OutgoingQueue,
    QueueClosed,
)
from gateway.ws.routing import Route


class FakeSocket:
    """Records what is written; `stuck` makes every write and close hang, like a client that
    stopped reading with full TCP buffers."""

    def __init__(self, stuck: bool = False) -> None:
        self.stuck = stuck
        self.sent: list[str] = []
        self.closed_with: tuple[int, bytes] | None = None
        self.aborted = False

    async def send_str(self, data: str) -> None:
        if self.stuck:
            await asyncio.Event().wait()
        self.sent.append(data)

    async def close(self, *, code: int = 1000, message: bytes = b"") -> bool:
        self.closed_with = (code, message)
        if self.stuck:
            await asyncio.Event().wait()
        return True

    def abort(self) -> None:
        self.aborted = True


def connection(user: str, socket: FakeSocket, capacity: int = 8, reply_limit: int = 4) -> Connection:
    conn = Connection(user, socket, socket.abort, OutgoingQueue(capacity, reply_limit), close_grace=0.2)
    conn.start_writer()
    return conn


async def until(check: object, timeout: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def test_a_queue_takes_pushes_up_to_its_capacity_in_order() -> None:
    queue = OutgoingQueue(capacity=3, reply_limit=2)
    assert [queue.offer(t) for t in "abcd"] == [True, True, True, False]
    assert [await queue.take() for _ in range(3)] == ["a", "b", "c"]


async def test_a_reply_waits_for_room_below_the_reply_limit() -> None:
    queue = OutgoingQueue(capacity=4, reply_limit=2)
    queue.offer("a")
    queue.offer("b")
    waiting = asyncio.create_task(queue.put_reply("reply"))
    await asyncio.sleep(0.01)
    assert not waiting.done() and len(queue) == 2
    assert queue.offer("c"), "pushes still fit above the reply limit"
    assert await queue.take() == "a"
    await asyncio.sleep(0.01)
    assert not waiting.done(), "still two queued"
    assert await queue.take() == "b"
    await asyncio.wait_for(waiting, 1)
    assert [await queue.take(), await queue.take()] == ["c", "reply"]


async def test_closing_a_queue_wakes_its_writer_and_its_waiting_replies() -> None:
    queue = OutgoingQueue(capacity=2, reply_limit=1)
    queue.offer("a")
    reply = asyncio.create_task(queue.put_reply("r"))
    empty = OutgoingQueue()
    taker = asyncio.create_task(empty.take())
    await asyncio.sleep(0.01)
    queue.close()
    empty.close()
    with pytest.raises(QueueClosed):
        await reply
    with pytest.raises(QueueClosed):
        await taker
    assert queue.offer("late") and len(queue) == 0


def test_a_queue_needs_a_sensible_reply_limit() -> None:
    with pytest.raises(ValueError, match="reply_limit <= capacity"):
        OutgoingQueue(capacity=2, reply_limit=3)


async def test_a_connection_writes_what_is_pushed_in_order() -> None:
    socket = FakeSocket()
    conn = connection("u", socket)
    for i in range(5):
        conn.push(f"f{i}")
    await conn.reply("r")
    await until(lambda: len(socket.sent) == 6)
    assert socket.sent == ["f0", "f1", "f2", "f3", "f4", "r"]
    await conn.close(1000, "bye")
    assert socket.closed_with == (1000, b"bye")


async def test_a_stuck_socket_is_closed_as_too_slow_and_does_not_delay_another() -> None:
    registry = ConnectionRegistry()
    slow_socket, fast_socket = FakeSocket(stuck=True), FakeSocket()
    slow, fast = connection("slow", slow_socket), connection("fast", fast_socket)
    registry.add(slow)
    registry.add(fast)
    for i in range(20):
        registry.push(Route("slow", f"s{i}"))
        registry.push(Route("fast", f"f{i}"))
        await asyncio.sleep(0)
    await until(lambda: len(fast_socket.sent) == 20)
    assert slow.closing and slow.close_code == SLOW_CLOSE_CODE
    assert slow_socket.closed_with is not None and slow_socket.closed_with[0] == SLOW_CLOSE_CODE
    await until(lambda: slow_socket.aborted)  # its close never completes: the transport is dropped
    assert registry.push(Route("slow", "after")) == 0, "a closing socket gets nothing more"
    await fast.close(1000, "")


async def test_a_reply_to_a_closed_connection_is_dropped_quietly() -> None:
    socket = FakeSocket()
    conn = connection("u", socket)
    await conn.close(1001, "going away")
    await asyncio.wait_for(conn.reply("late"), 1)
    assert socket.sent == []


async def test_the_registry_tells_first_and_last_sockets_of_a_user() -> None:
    registry = ConnectionRegistry()
    a1, a2, b = (connection(u, FakeSocket()) for u in ("a", "a", "b"))
    assert registry.add(a1) is True
    assert registry.add(a2) is False
    assert registry.add(b) is True
    assert len(registry) == 3 and sorted(registry.users()) == ["a", "b"]
    assert registry.push(Route("a", "x", skip_connection=a1.id)) == 1
    assert registry.remove(a1) is False
    assert registry.remove(a1) is False, "twice is harmless"
    assert registry.remove(a2) is True
    assert registry.users() == ["b"]
    for conn in (a1, a2, b):
        await conn.close(1000, "")


async def test_a_message_new_already_given_is_dropped_and_the_next_one_passes() -> None:
    socket = FakeSocket()
    conn = connection("u", socket)
    for seq in (1, 2, 2, 1, 3):
        conn.push(f"m{seq}", "chat", seq)
    conn.push("typing", None)
    conn.push("other chat", "chat-2", 1)
    await until(lambda: len(socket.sent) == 5)
    assert socket.sent == ["m1", "m2", "m3", "typing", "other chat"]
    await conn.close(1000, "")


async def test_a_sync_answer_counts_as_given() -> None:
    socket = FakeSocket()
    conn = connection("u", socket)
    conn.note_given("chat", 7)
    conn.push("m7", "chat", 7)
    conn.push("m8", "chat", 8)
    await until(lambda: len(socket.sent) == 1)
    assert socket.sent == ["m8"]
    await conn.close(1000, "")


async def test_held_pushes_wait_and_then_pass_the_same_checks_in_order() -> None:
    socket = FakeSocket()
    conn = connection("u", socket)
    conn.hold()
    conn.push("m5", "chat", 5)
    conn.push("m6", "chat", 6)
    conn.hold()
    conn.release()
    await asyncio.sleep(0.01)
    assert socket.sent == [], "nothing passes while any hold lasts"
    conn.give("r4", "chat", 4)
    conn.give("r5", "chat", 5)
    await until(lambda: len(socket.sent) == 2)
    assert socket.sent == ["r4", "r5"], "what a resync found goes out at once"
    conn.release()
    await until(lambda: len(socket.sent) == 3)
    assert socket.sent == ["r4", "r5", "m6"], "held pushes pass the same checks: m5 was given by the resync"
    await conn.close(1000, "")


async def test_a_socket_gets_no_message_new_of_what_it_sent_itself() -> None:
    """After a reconnect the client resends on the new socket; the first attempt's frames, which
    skip only the old socket, must not come to the new one beside the resend's ack."""
    socket = FakeSocket()
    conn = connection("u", socket)
    conn.note_send("mine")
    conn.push("my own", "chat", 1, sent_as="mine")
    conn.push("from another socket of mine", "chat", 2, sent_as="elsewhere")
    await until(lambda: len(socket.sent) == 1)
    assert socket.sent == ["from another socket of mine"]
    await conn.close(1000, "")
