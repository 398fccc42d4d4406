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
from typing import Any

from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from gateway import read_store
from gateway.commands import CommandTimeout
from gateway.consistency import NotProjected
from gateway.errors import DEPENDENCY_DOWN, ApiError
from gateway.limits import REFUSED as WRITES_REFUSED
from gateway.tokens import verify_access_claims
from gateway.ws.connections import Connection
from gateway.ws.metrics import ACK_SECONDS, ERRORS_OUT, FRAMES_IN
from gateway.ws.routing import Route
from gateway.ws.service import WsService
from schemas import topics
from schemas.commands import Body, DeleteMessage, EditMessage, MarkRead, Origin, Reply, SendMessage
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
    message_new_frame,
    parse_client_frame,
    read_frame,
    sync_done_frame,
    typing_frame,
)

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 32
"""Commands and queries running at once for one socket: enough to keep a fast client's pipeline
full (a send takes a few milliseconds), few enough that one socket cannot hog the gateway."""
SYNC_PAGE = 200
"""The read model's page size (the REST maximum), and how many frames a sync queues at a time."""


WRITE_FRAMES = (SendFrame, EditFrame, DeleteFrame, ReadFrame, TypingFrame)
"""Frames that take from the user's write budget: each becomes a command or, for `typing`, a
frame to every member (not stored, but fanned out like a message, so it costs the same)."""


class Refusal(Exception):
    """A frame that was understood but refused: becomes an `error` frame."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class FrameHandler:
    def __init__(self, service: WsService, connection: Connection) -> None:
        self.service = service
        self.connection = connection
        self.user_id = uuid.UUID(connection.user_id)
        self.origin = Origin(instance_id=service.instance_id, connection_id=connection.id)
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
        self.service.bucket(self.connection.user_id).credit(waited)
        self._write_credit += waited * self.service.settings.write_rate_per_s

    async def authenticate(self, frame: AuthFrame, ref: str | None) -> None:
        """Move the socket to a fresh token of its user: its session and deadline become the
        token's. Refused, the socket keeps both: `invalid_token`/`token_expired` for a token that
        is not valid (as over REST), `forbidden` for a valid token of another user (a socket
        never changes hands), `unavailable` if its session cannot be checked now."""
        try:
            claims = verify_access_claims(self.service.settings, frame.token)
            if str(claims.user_id) != self.connection.user_id:
                raise Refusal("forbidden", "the token is another user's: a socket keeps its user")
            await self.service.watch.require_live(claims)
        except ApiError as refused:
            await self.error(refused.code, refused.message, ref)
            return
        except Refusal as refusal:
            await self.error(refusal.code, refusal.message, ref)
            return
        except (RedisError, *DEPENDENCY_DOWN) as error:
            log.warning("socket %s: cannot check a session: %r", self.connection.id, error)
            await self.error("unavailable", "cannot check the token now; retry", ref)
            return
        self.service.watch.extend(self.connection, claims)

    async def refuse_binary(self) -> None:
        FRAMES_IN.labels("invalid").inc()
        if await self.within_rate(None):
            await self.error(INVALID_REQUEST, "frames are JSON text, not binary", None)

    async def within_rate(self, ref: str | None) -> bool:
        """Take a token from the user's bucket; without one, say so and drop the frame."""
        bucket = self.service.bucket(self.connection.user_id)
        if bucket.allow():
            return True
        await self.error("rate_limited", "too many frames: slow down", ref, math.ceil(bucket.wait_seconds() * 1000))
        return False

    async def within_budget(self, ref: str | None) -> bool:
        """Take one write from the user's budget (shared with REST and every instance); without
        one, say when to retry and drop the frame. Writes that waited on our stalls go through on
        the credit they earned meanwhile, as frames do in the bucket.

        Decided here, in the read loop, rather than in the frame's task: the tasks of one socket
        must reach the deciding agent in the order their frames came, or its sends would be
        sequenced out of order. Without Redis the frame is refused as `unavailable`."""
        try:
            wait_ms = await self.service.budget.take(self.connection.user_id)
        except (RedisError, *DEPENDENCY_DOWN) as error:
            log.warning("socket %s: cannot check the write budget: %r", self.connection.id, error)
            await self.error("unavailable", "the messenger is unavailable, retry later", ref)
            return False
        if not wait_ms:
            return True
        if self._write_credit >= 1:
            self._write_credit -= 1
            return True
        WRITES_REFUSED.labels("ws").inc()
        await self.error("rate_limited", "too many writes: slow down", ref, wait_ms)
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
        except Refusal as refusal:
            await self.error(refusal.code, refusal.message, ref)
        except CommandTimeout:
            await self.error("unavailable", "no answer in time; it may have been applied: retry the same frame", ref)
        except NotProjected:
            await self.error("unavailable", "stored but not readable yet: retry the same frame", ref)
        except (KafkaError, *DEPENDENCY_DOWN) as error:
            log.warning("socket %s: %s failed: %r", self.connection.id, frame.type, error)
            await self.error("unavailable", "the messenger is unavailable, retry later", ref)
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
            return self.typing(frame)
        assert isinstance(frame, SyncFrame)
        return self.sync(frame)

    # --- commands ---------------------------------------------------------------------------

    async def ask(self, chat_id: uuid.UUID, body: Body, *, chat_named: bool) -> Reply:
        """The accepted reply to `body`, once projected; `Refusal` with the contract's code else.

        The agent answers `not_found` for a chat the sender is not in; for a frame that names the
        chat, the contract calls that `forbidden`. For a frame that names a message, `not_found`
        stays: a message of a chat you are not in does not exist for you.
        """
        reply = await self.service.bus.ask(topics.MESSAGE_SEND, str(chat_id), body, self.user_id, origin=self.origin)
        if not reply.ok:
            code = reply.code or INVALID_REQUEST
            if code == "not_found" and chat_named:
                code = "forbidden"
            raise Refusal(code, reply.message or code.replace("_", " "))
        await self.service.watermarks.require_reply(reply, self.service.pool)
        return reply

    async def send(self, frame: SendFrame) -> None:
        started = time.perf_counter()
        body = SendMessage(chat_id=frame.chat_id, client_msg_id=frame.client_msg_id, text=frame.text)
        self.connection.note_send(frame.client_msg_id)
        reply = await self.ask(frame.chat_id, body, chat_named=True)
        await self.connection.reply(encode_frame(ack_frame(frame.client_msg_id, reply.result["message"])))
        ACK_SECONDS.observe(time.perf_counter() - started)

    async def edit(self, frame: EditFrame) -> None:
        chat_id = await self.chat_of(frame.message_id)
        reply = await self.ask(chat_id, EditMessage(chat_id=chat_id, message_id=frame.message_id, text=frame.text), chat_named=False)
        await self.connection.reply(encode_frame(message_edited_frame(reply.result["message"])))

    async def delete(self, frame: DeleteFrame) -> None:
        chat_id = await self.chat_of(frame.message_id)
        reply = await self.ask(chat_id, DeleteMessage(chat_id=chat_id, message_id=frame.message_id), chat_named=False)
        r = reply.result
        await self.connection.reply(encode_frame(message_deleted_frame(r["chat_id"], r["message_id"], r["seq"])))

    async def read(self, frame: ReadFrame) -> None:
        reply = await self.ask(frame.chat_id, MarkRead(chat_id=frame.chat_id, seq=frame.seq), chat_named=True)
        seq = reply.result["seq"]
        await self.connection.reply(encode_frame(read_frame(str(frame.chat_id), self.connection.user_id, seq)))

    async def chat_of(self, message_id: uuid.UUID) -> uuid.UUID:
        message = await read_store.message_by_id(self.service.pool, message_id)
        if message is None:
            raise Refusal("not_found", "no such message")
        return uuid.UUID(message["chat_id"])

    # --- not stored -------------------------------------------------------------------------

    async def typing(self, frame: TypingFrame) -> None:
        me = self.connection.user_id
        members = await self.service.members.members(frame.chat_id, must_include=me)
        if me not in members:
            raise Refusal("forbidden", "not a member of this chat")
        text = encode_frame(typing_frame(str(frame.chat_id), me))
        await self.service.channels.publish(Route(m, text) for m in members if m != me)

    async def sync(self, frame: SyncFrame) -> None:
        """Every message after `after_seq`, in order and in pages, then `sync.done`.

        Live pushes are held meanwhile and let through after it, so that none comes out of
        order or twice: the socket was given everything of the chat up to the last page.
        """
        pool = self.service.pool
        if not await read_store.is_member(pool, frame.chat_id, self.user_id):
            raise Refusal("forbidden", "not a member of this chat")
        self.connection.hold()
        try:
            last_seq = await self.send_pages(frame.chat_id, frame.after_seq)
        finally:
            self.connection.release()
        if last_seq == frame.after_seq:
            last_seq = await self.latest_seq(frame.chat_id)
        await self.connection.reply(encode_frame(sync_done_frame(str(frame.chat_id), last_seq)))

    async def send_pages(self, chat_id: uuid.UUID, after_seq: int) -> int:
        """Reply with every message after `after_seq`; the last seq sent (`after_seq` if none)."""
        last_seq = after_seq
        while True:
            page = await read_store.messages_page(self.service.pool, chat_id, before=None, after=last_seq, limit=SYNC_PAGE)
            for message in page:
                await self.connection.reply(encode_frame(message_new_frame(message)))
            if page:
                last_seq = page[-1]["seq"]
                self.connection.note_given(str(chat_id), last_seq)
            if len(page) < SYNC_PAGE:
                return last_seq

    async def latest_seq(self, chat_id: uuid.UUID) -> int:
        """The chat's last seq (0 for none): what a client that asked past the end should know."""
        latest = await read_store.messages_page(self.service.pool, chat_id, before=None, after=None, limit=1)
        return int(latest[-1]["seq"]) if latest else 0
