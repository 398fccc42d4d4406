"""What each client frame does (contract v1, "WebSocket"), for one socket.

`FrameHandler.receive` is called by the socket's read loop with each text frame, in order. It
parses and rate-limits the frame at once; anything that waits on another service (a command, a
query) runs as its own task, at most `MAX_IN_FLIGHT` per socket, so a slow command does not hold
up the frames behind it. When that many are running, reading waits, which slows the client down
through TCP rather than by buffering without bound.

Commands go to the deciding agent with this socket as their origin: the agent then skips this
socket in the frames it sends to members, and the answer here takes their place (`message.ack`
for a send; for an edit, delete or read, the very frame the other members get). Each answer is
sent once the change is in the read models (read-your-writes, as over REST).

An `auth` frame (v1.1) is handled before the next frame is read, like `ping`: a `ping` sent after
it is answered after it, so a client knows its token was taken when no `error` came first.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from gateway.infra.limits import REFUSED as WRITES_REFUSED
from gateway.infra.resources import DEPENDENCY_DOWN
from gateway.rest.errors import ApiError
from gateway.usecases import messaging
from gateway.usecases.ports import Actor, Ports
from gateway.usecases.refusal import FORBIDDEN, NOT_FOUND, RATE_LIMITED, UNAVAILABLE, Refused
from gateway.ws.connections import Connection
from gateway.ws.frame_rate import UserBuckets
from gateway.ws.handshake import SocketAuth
from gateway.ws.members import TypingRelay
from gateway.ws.metrics import ACK_SECONDS, ERRORS_OUT, FRAMES_IN
from gateway.ws.sync import SyncReader
from schemas.commands import Origin
from schemas.frames import (
    INVALID_REQUEST,
    PONG,
    AuthFrame,
    ClientFrame,
    DeleteFrame,
    EditFrame,
    FrameRefused,
    PingFrame,
    ReadFrame,
    SendFrame,
    SyncFrame,
    TypingFrame,
    ack_frame,
    encode_frame,
    error_frame,
    message_deleted_frame,
    message_edited_frame,
    parse_client_frame,
    read_frame,
)

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 32
"""Commands and queries running at once for one socket: enough to keep a fast client's pipeline
full (a send takes a few milliseconds), few enough that one socket cannot hog the gateway."""

WRITE_FRAMES = (SendFrame, EditFrame, DeleteFrame, ReadFrame, TypingFrame)
"""Frames that take from the user's write budget: each becomes a command or, for `typing`, a
frame to every member (not stored, but fanned out like a message, so it costs the same)."""


@dataclass(frozen=True)
class FrameServices:
    """What frames use, the same for every socket of this instance."""

    ports: Ports
    """The use cases' (commands, read-your-writes) and the write budget they share with REST."""
    rates: UserBuckets
    """Each user's frame bucket on this instance."""
    history: SyncReader
    typing: TypingRelay
    auth: SocketAuth
    instance_id: str


class FrameHandler:
    def __init__(self, services: FrameServices, connection: Connection) -> None:
        self.services = services
        self.connection = connection
        self.actor = Actor(
            uuid.UUID(connection.user_id),
            origin=Origin(instance_id=services.instance_id, connection_id=connection.id),
            prepaid=True,
        )
        """Commands come from this socket, and their writes are paid for in the read loop."""
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._tasks: set[asyncio.Task[None]] = set()
        self._write_credit = 0.0
        """Writes this socket may make over the budget: those its frames earned while they
        waited unread because of us (`_take_slot`)."""

    async def receive(self, text: str) -> None:
        """Handle one text frame; every frame, malformed ones too, counts against the user's rate."""
        try:
            frame, ref = parse_client_frame(text)
        except FrameRefused as refused:
            FRAMES_IN.labels("invalid").inc()
            if await self.within_rate(refused.ref):
                await self.error(refused.code, refused.message, refused.ref)
            return
        FRAMES_IN.labels(frame.type).inc()
        if not await self.within_rate(ref):
            return
        if isinstance(frame, PingFrame):
            await self.connection.reply(encode_frame(PONG))
            return
        if isinstance(frame, AuthFrame):
            await self.authenticate(frame, ref)
            return
        if isinstance(frame, WRITE_FRAMES) and not await self.within_budget(ref):
            return
        await self._take_slot()
        task = asyncio.create_task(self._run(frame, ref), name=f"ws {frame.type} {self.connection.id}")
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    async def _take_slot(self) -> None:
        """Wait for room among the frames in flight. While waiting, this socket is not read: what
        the client sends meanwhile waits in its buffers, so the time waited is credited back to
        the user's bucket (a stall of ours must not turn into `rate_limited` for them)."""
        if not self._slots.locked():
            await self._slots.acquire()
            return
        started = time.monotonic()
        await self._slots.acquire()
        waited = time.monotonic() - started
        self.services.rates.get(self.connection.user_id).credit(waited)
        self._write_credit += waited * self.services.ports.settings.write_rate_per_s

    async def authenticate(self, frame: AuthFrame, ref: str | None) -> None:
        """Move the socket to a fresh token of its user (`SocketAuth.renew`); refused, it keeps
        its session and deadline, and `unavailable` if its session cannot be checked now."""
        try:
            await self.services.auth.renew(self.connection, frame.token)
        except (ApiError, Refused) as refused:
            await self.error(refused.code, refused.message, ref)
        except (RedisError, *DEPENDENCY_DOWN) as error:
            log.warning("socket %s: cannot check a session: %r", self.connection.id, error)
            await self.error(UNAVAILABLE, "cannot check the token now; retry", ref)

    async def refuse_binary(self) -> None:
        FRAMES_IN.labels("invalid").inc()
        if await self.within_rate(None):
            await self.error(INVALID_REQUEST, "frames are JSON text, not binary", None)

    async def within_rate(self, ref: str | None) -> bool:
        """Take a token from the user's bucket; without one, say so and drop the frame."""
        bucket = self.services.rates.get(self.connection.user_id)
        if bucket.allow():
            return True
        await self.error(RATE_LIMITED, "too many frames: slow down", ref, math.ceil(bucket.wait_seconds() * 1000))
        return False

    async def within_budget(self, ref: str | None) -> bool:
        """Take one write from the user's budget (shared with REST and every instance); without
        one, say when to retry and drop the frame. Writes that waited on our stalls go through on
        the credit they earned meanwhile, as frames do in the bucket.

        Decided here, in the read loop, rather than in the frame's task: the tasks of one socket
        must reach the deciding agent in the order their frames came, or its sends would be
        sequenced out of order. Without Redis the frame is refused as `unavailable`."""
        try:
            wait_ms = await self.services.ports.budget.take(self.connection.user_id)
        except (RedisError, *DEPENDENCY_DOWN) as error:
            log.warning("socket %s: cannot check the write budget: %r", self.connection.id, error)
            await self.error(UNAVAILABLE, "the messenger is unavailable, retry later", ref)
            return False
        if not wait_ms:
            return True
        if self._write_credit >= 1:
            self._write_credit -= 1
            return True
        WRITES_REFUSED.labels("ws").inc()
        await self.error(RATE_LIMITED, "too many writes: slow down", ref, wait_ms)
        return False

    async def stop(self) -> None:
        """The socket closed: whatever is still running has nobody to answer."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def error(self, code: str, message: str, ref: str | None, retry_after_ms: int | None = None) -> None:
        ERRORS_OUT.labels(code).inc()
        await self.connection.reply(encode_frame(error_frame(code, message, ref, retry_after_ms)))

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    async def _run(self, frame: ClientFrame, ref: str | None) -> None:
        try:
            await self._dispatch(frame)
        except Refused as refused:
            code = FORBIDDEN if refused.code == NOT_FOUND and names_chat(frame) else refused.code
            await self.error(code, refused.message, ref, refused.retry_after_ms)
        except (KafkaError, *DEPENDENCY_DOWN) as error:
            log.warning("socket %s: %s failed: %r", self.connection.id, frame.type, error)
            await self.error(UNAVAILABLE, "the messenger is unavailable, retry later", ref)
        except Exception:
            log.exception("socket %s: %s failed", self.connection.id, frame.type)
            await self.error("internal_error", "internal error", ref)

    def _dispatch(self, frame: ClientFrame) -> Coroutine[Any, Any, None]:
        if isinstance(frame, SendFrame):
            return self.send(frame)
        if isinstance(frame, EditFrame):
            return self.edit(frame)
        if isinstance(frame, DeleteFrame):
            return self.delete(frame)
        if isinstance(frame, ReadFrame):
            return self.read(frame)
        if isinstance(frame, TypingFrame):
            return self.services.typing.relay(self.connection.user_id, frame.chat_id)
        assert isinstance(frame, SyncFrame)
        return self.services.history.sync(self.connection, frame.chat_id, frame.after_seq)

    # --- commands: the answer here takes the place of the frame the agent skips for this socket ---

    async def send(self, frame: SendFrame) -> None:
        started = time.perf_counter()
        self.connection.note_send(frame.client_msg_id)
        sent = await messaging.send_message(
            self.services.ports, self.actor, frame.chat_id, frame.client_msg_id, frame.text
        )
        await self.connection.reply(encode_frame(ack_frame(frame.client_msg_id, sent.message)))
        ACK_SECONDS.observe(time.perf_counter() - started)

    async def edit(self, frame: EditFrame) -> None:
        message = await messaging.edit_message(self.services.ports, self.actor, frame.message_id, frame.text)
        await self.connection.reply(encode_frame(message_edited_frame(message)))

    async def delete(self, frame: DeleteFrame) -> None:
        deleted = await messaging.delete_message(self.services.ports, self.actor, frame.message_id)
        await self.connection.reply(
            encode_frame(message_deleted_frame(deleted.chat_id, deleted.message_id, deleted.seq))
        )

    async def read(self, frame: ReadFrame) -> None:
        seq = await messaging.mark_read(self.services.ports, self.actor, frame.chat_id, frame.seq)
        await self.connection.reply(encode_frame(read_frame(str(frame.chat_id), self.connection.user_id, seq)))


def names_chat(frame: ClientFrame) -> bool:
    """Whether the frame names its chat (a send, a read): the agent's `not_found` for a chat the
    sender is not in is `forbidden` then (contract v1, "WebSocket"). For a frame that names a
    message, `not_found` stays: a message of a chat you are not in does not exist for you."""
    return isinstance(frame, (SendFrame, ReadFrame))
