"""Making open sockets whole after this instance may have missed deliveries for them.

Deliveries reach a socket through Redis pub/sub, which is at-most-once: what is published while
this instance's subscriber reconnects is lost, and records of `message.delivered` too old to push
(`gateway.ws.delivery.MAX_AGE_S`) are not pushed. Clients could find such gaps by `seq` and
`sync`, but the contract does not make them look, so the gateway, which knows when a gap is
possible, closes it itself:

- when the pub/sub connection comes back, every socket of this instance is resynced, once the
  read models have reached the end of `message.events` as it was then (a delivery lost in the
  gap was published before, so its message was decided before; it may not be in PostgreSQL yet,
  and a resync that read too early would miss it for good);
- for a stale delivery, its recipient's sockets are.

A resync reads, for each chat of the user with new activity, the messages after the last `seq`
the socket was given (for a chat it was given nothing of: those decided since it opened; what
came before, the client syncs when it connects), and pushes them as `message.new` through the
socket's usual checks, with live pushes held meanwhile: nothing is given twice, nothing out of
order. Messages this socket sent itself are dropped by the same checks (it gets their
`message.ack`). A socket that
missed more than `RESYNC_LIMIT` messages of a chat, or that cannot be resynced because PostgreSQL
is down, or whose read models do not catch up within the read-your-writes limit, is closed with
4008 like a slow one: the client reconnects and syncs.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiokafka.errors import KafkaError

from config.settings import GatewaySettings
from gateway.infra import read_store
from gateway.infra.consistency import ProjectionWatermarks
from gateway.infra.resources import DEPENDENCY_DOWN
from gateway.ws.connections import SLOW_CLOSE_CODE, Connection, ConnectionRegistry
from gateway.ws.metrics import RESYNCED, RESYNCS
from gateway.ws.routing import Route
from runtime import topic_log
from schemas import topics
from schemas.commands import Position
from schemas.frames import encode_frame, message_new_frame

log = logging.getLogger(__name__)

RESYNC_LIMIT = 200
"""Messages of one chat a resync pushes at most (the `sync` page size); past it, the socket is
closed and its client syncs, which pages through any number."""
OPEN_MARGIN_S = 2.0
"""How long before a socket opened a message may have been decided and still be this socket's to
get live (the clocks of the streams workers and of this instance may differ a little)."""
CANNOT_RESYNC_REASON = "missed messages, reconnect and sync"
LOG_END_TIMEOUT_S = 5.0

CaughtUp = Callable[[], Awaitable[bool]]
"""Waits until the read models hold every message decided so far; False if they did not in time
(or that cannot be known)."""


def read_models_caught_up(settings: GatewaySettings, watermarks: ProjectionWatermarks) -> CaughtUp:
    """A `CaughtUp` that reads the end of `message.events` now, then waits for the projections'
    progress to pass it."""
    topic = settings.topic(topics.MESSAGE_EVENTS.name)

    async def caught_up() -> bool:
        try:
            ends = await asyncio.wait_for(topic_log.end_offsets(settings, topic), LOG_END_TIMEOUT_S)
        except (KafkaError, OSError, TimeoutError) as error:
            log.warning("cannot read the end of %s: %r", topic, error)
            return False
        return await watermarks.wait_for(
            [Position(topic=topic, partition=p, offset=end - 1) for p, end in ends.items() if end > 0]
        )

    return caught_up


class Resyncer:
    """Receives every route of this instance's user channels, and resyncs sockets on request."""

    def __init__(self, pool: asyncpg.Pool, registry: ConnectionRegistry, caught_up: CaughtUp) -> None:
        self._pool = pool
        self._registry = registry
        self._caught_up = caught_up
        self._running: dict[str, asyncio.Task[None]] = {}
        """The resync in progress of each connection id."""
        self._again: set[str] = set()
        """Connections asked for again while their resync ran: it runs once more after."""
        self._after: dict[str, asyncio.Future[bool]] = {}
        """What the next resync of a connection waits for first (the read models catching up)."""

    def receive(self, route: Route) -> None:
        if not route.resync:
            self._registry.push(route)
            return
        for connection in self._registry.of_user(route.user_id):
            self.request(connection, "stale_delivery")

    def resync_all(self, cause: str) -> None:
        """Resync every socket once the read models hold what was decided until now."""
        connections = list(self._registry)
        if not connections:
            return
        caught_up = asyncio.ensure_future(self._caught_up())
        for connection in connections:
            self.request(connection, cause, after=caught_up)

    def request(self, connection: Connection, cause: str, after: asyncio.Future[bool] | None = None) -> None:
        if connection.closing:
            return
        RESYNCS.labels(cause).inc()
        if after is not None:
            self._after[connection.id] = after
        if connection.id in self._running:
            self._again.add(connection.id)
            return
        connection.hold()
        self._running[connection.id] = asyncio.create_task(self._run(connection), name=f"resync {connection.id}")

    async def stop(self) -> None:
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, connection: Connection) -> None:
        """Resync until no request came meanwhile. Live pushes are held from the request on (see
        `request`): a route the listener reads before this task first runs would otherwise reach
        the socket, raise its last `seq` given past a gap, and hide the gap from the resync."""
        try:
            while not connection.closing:
                self._again.discard(connection.id)
                after = self._after.pop(connection.id, None)
                if after is not None and not await self._settled(after):
                    log.warning("socket %s of user %s: the read models are behind", connection.id, connection.user_id)
                    connection.close_soon(SLOW_CLOSE_CODE, CANNOT_RESYNC_REASON)
                    break
                await self.resync(connection)
                if connection.id not in self._again:
                    break
        except DEPENDENCY_DOWN as error:
            log.warning("cannot resync socket %s of user %s: %r", connection.id, connection.user_id, error)
            connection.close_soon(SLOW_CLOSE_CODE, CANNOT_RESYNC_REASON)
        finally:
            self._running.pop(connection.id, None)
            self._again.discard(connection.id)
            self._after.pop(connection.id, None)
            connection.release()

    @staticmethod
    async def _settled(after: asyncio.Future[bool]) -> bool:
        """Whether what a resync waits for came true; shared by every socket, so never cancelled by one."""
        try:
            return await asyncio.shield(after)
        except Exception:
            log.exception("waiting for the read models failed")
            return False

    async def resync(self, connection: Connection) -> None:
        connection.hold()
        try:
            missed = await self.missed(connection)
            if missed is None:
                log.info("socket %s of user %s missed too much to resync", connection.id, connection.user_id)
                connection.close_soon(SLOW_CLOSE_CODE, CANNOT_RESYNC_REASON)
                return
            for message in missed:
                own = message["client_msg_id"] if message["sender_id"] == connection.user_id else None
                connection.give(encode_frame(message_new_frame(message)), message["chat_id"], message["seq"], own)
            RESYNCED.inc(len(missed))
        finally:
            connection.release()

    async def missed(self, connection: Connection) -> list[dict[str, Any]] | None:
        """What the socket may have missed, chat by chat in `seq` order; None if too much."""
        since = datetime.fromtimestamp(connection.opened_at - OPEN_MARGIN_S, UTC)
        found: list[dict[str, Any]] = []
        for chat_id, last_seq, last_activity in await read_store.chat_activity_of(
            self._pool, uuid.UUID(connection.user_id)
        ):
            given = connection.given.get(str(chat_id))
            if given is not None:
                if last_seq <= given:
                    continue
                page = await read_store.messages_page(
                    self._pool, chat_id, before=None, after=given, limit=RESYNC_LIMIT + 1
                )
            elif last_activity >= since:
                latest = await read_store.messages_page(
                    self._pool, chat_id, before=None, after=None, limit=RESYNC_LIMIT + 1
                )
                page = [m for m in latest if datetime.fromisoformat(m["created_at"]) >= since]
            else:
                continue
            if len(page) > RESYNC_LIMIT:
                return None
            found.extend(page)
        return found
