"""The sockets open on this instance: one `Connection` each, found by user in a `ConnectionRegistry`.

Every socket has its own bounded `OutgoingQueue` and its own writer task, so a slow or stuck
client only ever blocks its own writer. Frames pushed to a connection come in two kinds:

- pushed frames (deliveries, typing, presence) never wait: if the queue is full the client is
  too far behind, and the socket is closed with `SLOW_CLOSE_CODE`; the client reconnects and
  catches up with `sync`, which is cheaper for everyone than an ever-growing buffer;
- replies to the client's own frames (acks, errors, sync pages) wait for room below
  `REPLY_LIMIT`, which leaves `MAX_QUEUED_FRAMES - REPLY_LIMIT` slots for pushed frames, so a
  long `sync` slows itself down instead of getting its socket closed.

A socket never gets the same `message.new` twice: each connection remembers, per chat, the
highest `seq` it was given (live, by a server-side resync or in a `sync` answer) and drops a
pushed `message.new` at or below it (a redelivery after a Kafka or gateway restart), and drops
the `message.new` of a message it sent itself (it gets the `message.ack`; a resend on a new
socket after a reconnect is answered there, while the first attempt's frames may still come).
Live pushes of one chat come in `seq` order (one partition per recipient, decided in order), so
the highest `seq` is all there is to remember. While a sync or resync answers from the read models, pushes
are held and then let through the same check, so that the two never interleave out of order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from typing import Protocol

from gateway.ws.metrics import DUPLICATES_DROPPED, FRAMES_OUT, OPEN_SOCKETS, SLOW_CLOSES
from gateway.ws.routing import Route

log = logging.getLogger(__name__)

MAX_QUEUED_FRAMES = 512
"""Far more than a live conversation produces while a healthy client reads (a busy group sends a
few frames a second); a client that falls this far behind is better served by `sync`."""
REPLY_LIMIT = MAX_QUEUED_FRAMES // 2
"""Replies wait while the queue is at least this long: half the queue stays free for pushes."""
SLOW_CLOSE_CODE = 4008
SLOW_CLOSE_REASON = "too slow, reconnect and sync"
GOING_AWAY_CODE = 1001
OWN_SENDS_KEPT = 256
"""The `client_msg_id`s of this socket's latest sends: a resync skips them (the socket gets, or
got, their `message.ack`). More than a client has in flight (`MAX_IN_FLIGHT`)."""
CLOSE_GRACE_S = 3.0
"""How long a close may take (sending the close frame to a client that does not read, and its
answer) before the transport is aborted."""


class QueueClosed(Exception):
    """The connection is closing: nothing more is queued or written."""


class OutgoingQueue:
    """Frames (already encoded) waiting for one socket's writer."""

    def __init__(self, capacity: int = MAX_QUEUED_FRAMES, reply_limit: int = REPLY_LIMIT) -> None:
        if not 0 < reply_limit <= capacity:
            raise ValueError("an outgoing queue needs 0 < reply_limit <= capacity")
        self.capacity = capacity
        self.reply_limit = reply_limit
        self._frames: deque[str] = deque()
        self._has_frames = asyncio.Event()
        self._has_room = asyncio.Event()
        self._has_room.set()
        self.closed = False

    def __len__(self) -> int:
        return len(self._frames)

    def offer(self, text: str) -> bool:
        """Queue a pushed frame; False if the queue is full (the caller closes the socket)."""
        if self.closed:
            return True
        if len(self._frames) >= self.capacity:
            return False
        self._append(text)
        return True

    async def put_reply(self, text: str) -> None:
        """Queue a reply once the queue is shorter than `reply_limit`; `QueueClosed` if it closes."""
        while not self.closed and len(self._frames) >= self.reply_limit:
            self._has_room.clear()
            await self._has_room.wait()
        if self.closed:
            raise QueueClosed()
        self._append(text)

    async def take(self) -> str:
        """The oldest frame, once there is one; `QueueClosed` once closed."""
        while not self._frames:
            if self.closed:
                raise QueueClosed()
            self._has_frames.clear()
            await self._has_frames.wait()
        text = self._frames.popleft()
        if len(self._frames) < self.reply_limit:
            self._has_room.set()
        return text

    def close(self) -> None:
        """Drop what is queued and wake every waiter."""
        self.closed = True
        self._frames.clear()
        self._has_frames.set()
        self._has_room.set()

    def _append(self, text: str) -> None:
        self._frames.append(text)
        self._has_frames.set()
        if len(self._frames) >= self.reply_limit:
            self._has_room.clear()


class Socket(Protocol):
    """What a connection needs of aiohttp's `WebSocketResponse` (tests pass fakes)."""

    async def send_str(self, data: str) -> None: ...

    async def close(self, *, code: int = ..., message: bytes = ...) -> bool: ...


class Connection:
    """One open socket of one user on this instance."""

    def __init__(
        self,
        user_id: str,
        socket: Socket,
        abort: Callable[[], None],
        queue: OutgoingQueue | None = None,
        close_grace: float = CLOSE_GRACE_S,
        *,
        session_id: str = "",
        expires_at: float = math.inf,
    ) -> None:
        self.id = uuid.uuid4().hex
        self.user_id = user_id
        self.session_id = session_id
        """The session (refresh family) of the last access token this socket was given."""
        self.expires_at = expires_at
        """That token's `exp`: the socket closes with 4001 then (`gateway.ws.session_watch`)."""
        self.socket = socket
        self.queue = queue if queue is not None else OutgoingQueue()
        self._abort = abort
        self._close_grace = close_grace
        self._writer: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None
        self.close_code: int | None = None
        self.opened_at = time.time()
        self.given: dict[str, int] = {}
        """Per chat id, the highest `seq` this socket was given as `message.new` or in a sync."""
        self._own_sends: deque[str] | None = None
        self._holds = 0
        self._held: list[tuple[str, str | None, int, str | None]] = []

    def start_writer(self) -> None:
        self._writer = asyncio.create_task(self._write(), name=f"ws writer {self.id}")

    @property
    def closing(self) -> bool:
        return self._closing is not None

    def push(self, text: str, chat_id: str | None = None, seq: int = 0, sent_as: str | None = None) -> None:
        """Queue a pushed frame (a `message.new` names its chat and `seq`, and for the user's own
        message its `client_msg_id`); a message already given, or sent from this socket, is
        dropped; a full queue closes the socket as too slow."""
        if self._holds:
            self._held.append((text, chat_id, seq, sent_as))
            if len(self._held) > self.queue.capacity:
                self._too_slow()
            return
        self.give(text, chat_id, seq, sent_as)

    def give(self, text: str, chat_id: str | None = None, seq: int = 0, sent_as: str | None = None) -> None:
        """Queue a frame now, held pushes or not (what a resync found), with the same checks."""
        if chat_id is not None:
            if seq <= self.given.get(chat_id, 0) or (sent_as is not None and self.sent(sent_as)):
                DUPLICATES_DROPPED.inc()
                return
            self.given[chat_id] = seq
        if not self.queue.offer(text):
            self._too_slow()

    def note_send(self, client_msg_id: str) -> None:
        """This socket sends `client_msg_id`: it gets the message's ack, not a `message.new`."""
        if self._own_sends is None:
            self._own_sends = deque(maxlen=OWN_SENDS_KEPT)
        self._own_sends.append(client_msg_id)

    def sent(self, client_msg_id: str) -> bool:
        return self._own_sends is not None and client_msg_id in self._own_sends

    def note_given(self, chat_id: str, seq: int) -> None:
        """A `sync` answer gave the client everything of `chat_id` up to `seq`."""
        if seq > self.given.get(chat_id, 0):
            self.given[chat_id] = seq

    def hold(self) -> None:
        """Keep pushed frames back (while a sync answers from the read models)."""
        self._holds += 1

    def release(self) -> None:
        """Let the held frames through the usual checks, once the last hold ends."""
        self._holds -= 1
        if self._holds == 0:
            held, self._held = self._held, []
            for text, chat_id, seq, sent_as in held:
                self.push(text, chat_id, seq, sent_as)

    def _too_slow(self) -> None:
        SLOW_CLOSES.inc()
        log.info("closing socket %s of user %s: %d frames behind", self.id, self.user_id, len(self.queue))
        self.close_soon(SLOW_CLOSE_CODE, SLOW_CLOSE_REASON)

    async def reply(self, text: str) -> None:
        """Queue a reply to the client's own frame, waiting for room; dropped once closing."""
        with contextlib.suppress(QueueClosed):
            await self.queue.put_reply(text)

    def close_soon(self, code: int, reason: str) -> asyncio.Task[None]:
        """Start closing (once); the returned task ends when the socket is closed or aborted."""
        if self._closing is None:
            self.close_code = code
            self.queue.close()
            self._closing = asyncio.create_task(self._close(code, reason), name=f"ws close {self.id}")
        return self._closing

    async def close(self, code: int, reason: str) -> None:
        await asyncio.shield(self.close_soon(code, reason))

    async def stop_writer(self) -> None:
        """After the socket has closed: end the writer, drop what is queued."""
        self.queue.close()
        await self._cancel_writer()

    async def _cancel_writer(self) -> None:
        writer = self._writer
        if writer is None or writer is asyncio.current_task():
            return
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)

    async def _close(self, code: int, reason: str) -> None:
        await self._cancel_writer()
        try:
            await asyncio.wait_for(self.socket.close(code=code, message=reason.encode()), self._close_grace)
        except (TimeoutError, ConnectionError, RuntimeError):
            self._abort()

    async def _write(self) -> None:
        try:
            while True:
                text = await self.queue.take()
                await self.socket.send_str(text)
                FRAMES_OUT.inc()
        except QueueClosed:
            pass
        except (ConnectionError, RuntimeError) as error:
            log.debug("socket %s: write failed: %r", self.id, error)
            self.queue.close()


class ConnectionRegistry:
    """The connections of this instance by user id, and what happens when they come and go."""

    def __init__(self) -> None:
        self._by_user: dict[str, dict[str, Connection]] = {}

    def __len__(self) -> int:
        return sum(len(c) for c in self._by_user.values())

    def __iter__(self) -> Iterator[Connection]:
        return iter([c for conns in self._by_user.values() for c in conns.values()])

    def users(self) -> list[str]:
        return list(self._by_user)

    def add(self, connection: Connection) -> bool:
        """Register `connection`; True if it is its user's first here."""
        conns = self._by_user.setdefault(connection.user_id, {})
        conns[connection.id] = connection
        OPEN_SOCKETS.inc()
        return len(conns) == 1

    def remove(self, connection: Connection) -> bool:
        """Forget `connection`; True if it was its user's last here."""
        conns = self._by_user.get(connection.user_id)
        if conns is None or conns.pop(connection.id, None) is None:
            return False
        OPEN_SOCKETS.dec()
        if conns:
            return False
        del self._by_user[connection.user_id]
        return True

    def push(self, route: Route) -> int:
        """Queue a route's frame on every socket of its user here but its `skip_connection`;
        how many got it."""
        pushed = 0
        for connection in self.of_user(route.user_id):
            if connection.id != route.skip_connection and not connection.closing:
                connection.push(route.text, route.chat_id, route.seq, route.sent_as)
                pushed += 1
        return pushed

    def of_user(self, user_id: str) -> list[Connection]:
        return list(self._by_user.get(user_id, {}).values())

    async def close_all(self, code: int, reason: str) -> None:
        closes: list[Awaitable[None]] = [c.close(code, reason) for c in self]
        await asyncio.gather(*closes, return_exceptions=True)
