"""Frames for a user, from whichever instance has them to whichever instances hold that user's
sockets, through one Redis pub/sub channel per user: `{prefix}deliver:<user_id>`.

An instance subscribes to the channel of each user with a socket here (from the first socket's
open to the last one's close) and publishes to the channels of the recipients of what it consumes
from `message.delivered` (and of typing and presence frames). Redis sends each message only to
the instances subscribed to that channel, so an instance receives its own users' frames and no
others. A message is `<skip_connection>\\n<frame text>`: the frame is encoded once, by the
publisher, and written as it is to every socket; a frame text never holds a raw newline.
A `message.new` names its chat and `seq` in the header (and, to its sender, its `client_msg_id`),
so that each socket drops a repeat, or its own message, without decoding the frame; a "resync"
message asks the user's sockets to be made whole from the read models (`gateway.ws.resync`), for
deliveries the publisher could not push; a "session
end" message (`gateway.auth.session_end`) carries a session id (or `*`: all of them) whose sockets
close with 4001.

Subscribing is confirmed before a socket is answered: `acquire` returns once Redis has taken the
SUBSCRIBE, so nothing published after a client sees its socket open is missed. Pub/sub is
at-most-once: a message published while an instance reconnects to Redis is lost. So when the
listener's connection comes back, `on_reopened` is called, and the service makes every local
socket whole from the read models. The sign of a new connection is a second confirmation of this
instance's own channel: redis-py subscribes to every channel again as it reconnects, and may do
so inside a read that never raised (its retry policy), so no exception is a reliable sign.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from gateway.infra.healing import ConnectionState, reconnect_backoff
from gateway.ws.metrics import ROUTED
from schemas.codec import as_str

log = logging.getLogger(__name__)

SUBSCRIBE_TIMEOUT_S = 5.0
START_WAIT_S = 2.0
"""How long `start` waits for the connection before going on without it (reported by /healthz)."""
SEPARATOR = "\n"
FIELD = "\t"
FRAME, RESYNC, SESSION_END = "f", "r", "e"
CHANNELS = "deliver:"
ALL_SESSIONS = "*"
"""The session id of a "session end" message that ends every session of its user."""
CONNECTION_NAME = "user_channels"

Receiver = Callable[["Route"], object]
"""Called with every route received on a subscribed channel."""


@dataclass(frozen=True)
class Route:
    """One frame for every socket of one user (but `skip_connection`); a `message.new` names its
    chat and `seq`. A resync route carries no frame: it asks for the user's sockets to be made
    whole from the read models."""

    user_id: str
    text: str
    skip_connection: str | None = None
    chat_id: str | None = None
    seq: int = 0
    sent_as: str | None = None
    """The `client_msg_id` of a `message.new` of the recipient's own message."""
    resync: bool = False
    session_end: bool = False
    """Not a frame: `text` names the user's session whose sockets close (`*`: every session)."""


def channel_name(topic_prefix: str, user_id: str) -> str:
    """The channel of a user's sockets, for publishers outside `UserChannels`."""
    return f"{topic_prefix}{CHANNELS}{user_id}"


def encode_message(route: Route) -> str:
    kind = RESYNC if route.resync else SESSION_END if route.session_end else FRAME
    fields = (kind, route.skip_connection or "", route.chat_id or "", str(route.seq), route.sent_as or "")
    return f"{FIELD.join(fields)}{SEPARATOR}{route.text}"


def decode_message(user_id: str, data: bytes | str) -> Route:
    """The route of a channel message (ValueError for one no gateway wrote)."""
    raw = data.decode() if isinstance(data, bytes) else data
    header, _, text = raw.partition(SEPARATOR)
    kind, skip, chat_id, seq, sent_as = header.split(FIELD)
    return Route(
        user_id, text, skip or None, chat_id or None, int(seq), sent_as or None, kind == RESYNC, kind == SESSION_END
    )


class UserChannels:
    def __init__(
        self,
        redis: aioredis.Redis,
        prefix: str,
        instance_id: str,
        receiver: Receiver,
        on_reopened: Callable[[], object] = lambda: None,
    ) -> None:
        self._redis = redis
        self._prefix = f"{prefix}{CHANNELS}"
        self._receiver = receiver
        self._on_reopened = on_reopened
        self.state = ConnectionState(CONNECTION_NAME)
        self._own_confirmed = False
        self._first_open = asyncio.Event()
        self._pubsub: PubSub | None = None
        self._listener: asyncio.Task[None] | None = None
        self._own_channel = f"{self._prefix}instance:{instance_id}"
        self._users: dict[str, int] = {}
        """How many local sockets each subscribed user has."""
        self._confirmations: dict[str, deque[asyncio.Future[None]]] = {}
        """One future per SUBSCRIBE sent and not yet confirmed, in order, per channel."""

    def channel(self, user_id: str) -> str:
        return self._prefix + user_id

    async def start(self) -> None:
        """Start listening. The connection holds a channel of this instance's own, so that it
        always has a subscription (redis-py reads nothing from a pub/sub without any); if Redis
        is down, the listener keeps trying and the gateway starts anyway (its health says so)."""
        self._pubsub = self._redis.pubsub()
        self._listener = asyncio.create_task(self._listen(), name="user channels listener")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first_open.wait(), START_WAIT_S)

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
        if self._pubsub is not None:
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]

    async def acquire(self, user_id: str) -> None:
        """Count one more local socket of `user_id`; subscribe to its channel for the first one.

        Returns once Redis confirmed the subscription (`TimeoutError` after `SUBSCRIBE_TIMEOUT_S`).
        """
        assert self._pubsub is not None
        count = self._users.get(user_id, 0)
        self._users[user_id] = count + 1
        channel = self.channel(user_id)
        pending = self._confirmations.setdefault(channel, deque())
        if count == 0:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            pending.append(future)
            try:
                await self._pubsub.subscribe(channel)
            except BaseException:
                pending.remove(future)
                raise
        if pending:
            await asyncio.wait_for(asyncio.shield(pending[-1]), SUBSCRIBE_TIMEOUT_S)

    async def release(self, user_id: str) -> None:
        """Count one local socket less; unsubscribe after the last one."""
        count = self._users.get(user_id, 0)
        if count > 1:
            self._users[user_id] = count - 1
            return
        self._users.pop(user_id, None)
        if count == 1 and self._pubsub is not None:
            try:
                await self._pubsub.unsubscribe(self.channel(user_id))
            except RedisError as error:
                log.warning("cannot unsubscribe from %s: %r", self.channel(user_id), error)

    async def publish(self, routes: Iterable[Route]) -> int:
        """PUBLISH every route in one pipelined round trip; how many were sent."""
        count = 0
        async with self._redis.pipeline(transaction=False) as pipe:
            for route in routes:
                pipe.publish(self.channel(route.user_id), encode_message(route))
                count += 1
            if count:
                await pipe.execute()
        return count

    async def _listen(self) -> None:
        """Read the connection until stopped; it never ends on an error, or this instance would
        stop pushing frames while looking healthy. Reads block without a timeout: a read with
        one costs a timer per message, which showed in the profile of a busy group."""
        assert self._pubsub is not None
        backoff = reconnect_backoff()
        while True:
            try:
                if not self._pubsub.subscribed:
                    await self._pubsub.subscribe(self._own_channel)
                message = await self._pubsub.get_message(timeout=None)
                backoff.reset()
                if message is not None:
                    self._handle(message)
            except (RedisError, OSError) as error:
                self.state.lost(error)
                await asyncio.sleep(backoff.next_pause())
            except Exception:
                log.exception("user channels: unexpected error; going on")
                await asyncio.sleep(backoff.next_pause())

    def _own_channel_confirmed(self) -> None:
        """The first confirmation opens the connection; each later one means a new connection,
        and that whatever was published meanwhile is lost."""
        if not self._own_confirmed:
            self._own_confirmed = True
            self._first_open.set()
            self.state.opened()
            return
        if self.state.up:
            self.state.lost("reconnected")
        self.state.opened()
        self._on_reopened()

    def _handle(self, message: dict[str, object]) -> None:
        kind = message["type"]
        channel = as_str(message["channel"])
        if kind == "subscribe" and channel == self._own_channel:
            self._own_channel_confirmed()
        elif kind == "subscribe":
            pending = self._confirmations.get(channel)
            if pending:
                future = pending.popleft()
                if not future.done():
                    future.set_result(None)
            if pending is not None and not pending and channel.removeprefix(self._prefix) not in self._users:
                self._confirmations.pop(channel, None)
        elif kind == "unsubscribe":
            if channel.removeprefix(self._prefix) not in self._users and not self._confirmations.get(channel):
                self._confirmations.pop(channel, None)
        elif kind == "message" and channel.startswith(self._prefix):
            data = message["data"]
            assert isinstance(data, (bytes, str))
            try:
                route = decode_message(channel[len(self._prefix) :], data)
            except ValueError:
                log.warning("ignored a malformed message on %s", channel)
                return
            ROUTED.inc()
            self._receiver(route)
