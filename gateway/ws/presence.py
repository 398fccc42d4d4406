"""Presence: this instance's sessions kept alive in Redis, and `presence` frames when a user's
first socket anywhere opens or their last one closes or expires.

A change goes to everyone who shares a chat with the user (from the read model), through the
per-user channels of `gateway.ws.routing`, like any other frame.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

import asyncpg
from redis.exceptions import RedisError

from gateway.infra import read_store
from gateway.ws.connections import Connection
from gateway.ws.metrics import PRESENCE_CHANGES
from gateway.ws.routing import Route, UserChannels
from gateway.ws.sessions import HEARTBEAT_S, Session, SessionStore
from schemas.frames import encode_frame, presence_frame

log = logging.getLogger(__name__)


class Presence:
    def __init__(self, store: SessionStore, channels: UserChannels, pool: asyncpg.Pool) -> None:
        self._store = store
        self._channels = channels
        self._pool = pool
        self._open: dict[str, Session] = {}
        """This instance's sessions that Redis knows about, by connection id."""
        self._heartbeat: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._heartbeat = asyncio.create_task(self._beat(), name="sessions heartbeat")

    async def stop(self) -> None:
        """End the heartbeat and close every session still open here."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
        sessions = list(self._open.values())
        await asyncio.gather(*(self.closed(s) for s in sessions), return_exceptions=True)

    async def record(self, session: Session, cap: int = 0) -> bool:
        """Record a session; True if its user just came online (the caller announces it).
        `TooManySessions` if the user already holds `cap` (0: no cap)."""
        came_online = await self._store.open(session, cap)
        self._open[session.connection_id] = session
        return came_online

    async def opened(self, session: Session) -> None:
        if await self.record(session):
            await self.announce(session.user_id, True)

    async def closed(self, session: Session) -> None:
        if self._open.pop(session.connection_id, None) is None:
            return
        if await self._store.close(session):
            await self.announce(session.user_id, False)

    async def announce(self, user_id: str, online: bool) -> None:
        """Tell everyone who shares a chat with `user_id`; a failure is logged, not raised.

        Two instances may announce opposite changes of one user moments apart (a last socket
        closing here, a first one opening there); the state is read again just before
        publishing, and an announcement it no longer matches is dropped, so that the later
        change is the one partners keep.
        """
        try:
            partners = await read_store.chat_partner_ids(self._pool, uuid.UUID(user_id))
            if await self._store.is_online(user_id) != online:
                return
            text = encode_frame(presence_frame(user_id, online))
            await self._channels.publish(Route(str(p), text) for p in partners)
            PRESENCE_CHANGES.labels(str(online).lower()).inc()
        except (OSError, RedisError, asyncpg.PostgresError) as error:
            log.warning("cannot announce presence of %s: %r", user_id, error)

    async def tell_who_is_online(self, connection: Connection) -> None:
        """*(addition)* A socket that just opened gets a `presence` frame for each of its user's
        partners online now; changes after come as they happen (its channel is subscribed before
        this reads, and the frames are queued right after the read). A failure is logged: the
        socket then learns presence from changes only."""
        try:
            partners = await read_store.chat_partner_ids(self._pool, uuid.UUID(connection.user_id))
            online = await self._store.online_among([str(p) for p in partners])
        except (OSError, RedisError, asyncpg.PostgresError) as error:
            log.warning("cannot tell socket %s who is online: %r", connection.id, error)
            return
        for user_id in online:
            connection.push(encode_frame(presence_frame(user_id, True)))

    async def beat(self) -> None:
        """Renew this instance's sessions, open again those swept meanwhile, and sweep everyone's
        expired ones (any instance may: the script lets one of them announce each)."""
        missing = await self._store.renew(list(self._open.values()))
        for session in missing:
            if session.connection_id in self._open:
                self._open.pop(session.connection_id)
                await self.opened(session)
        for user_id in await self._store.sweep():
            await self.announce(user_id, False)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            try:
                await self.beat()
            except (OSError, RedisError) as error:
                log.warning("sessions heartbeat failed: %r", error)
            except Exception:
                log.exception("sessions heartbeat failed")
