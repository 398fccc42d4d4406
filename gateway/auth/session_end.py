"""Ending sessions, and telling every gateway instance so (contract v1.1, "Sockets follow their
session").

A session is a refresh-token family (`gateway.auth.refresh_tokens`); its id is the `sid` of the
access tokens issued with it. It ends at logout, when a retired refresh token is presented again
(the family is killed), and when its user's account is erased. Ending one is two steps:

1. its family dies in Redis: from then on no refresh succeeds and no socket opens with its tokens;
2. a "session end" message goes to the user's channel (`gateway.ws.routing`), which every instance
   holding a socket of that user is subscribed to; each closes that session's sockets with 4001.

Pub/sub is at-most-once (a message published while an instance reconnects to Redis is lost), so
step 2 is only the fast path: every instance also checks, every few seconds, that the families of
its open sockets still exist (`gateway.ws.session_watch`), and closes those of a dead one. Either
way a socket of an ended session is closed within 5 s.

    ends = app[SESSION_ENDS]
    await ends.end_session(user_id, session_id)   # one session (e.g. "log out that device")
    await ends.end_other_sessions(user_id, keep)  # all but one (a password change)
    await ends.end_user_sessions(user_id)         # all of them (erasure)
"""

from __future__ import annotations

import logging
from uuid import UUID

import redis.asyncio as aioredis
from aiohttp import web
from redis.exceptions import RedisError

from gateway.auth.refresh_tokens import EndedSession, RefreshTokenStore
from gateway.ws.routing import ALL_SESSIONS, Route, channel_name, encode_message

log = logging.getLogger(__name__)


class SessionEnds:
    """The one place where sessions end: the refresh store kills, the user's channel tells."""

    def __init__(self, redis: aioredis.Redis, store: RefreshTokenStore, topic_prefix: str) -> None:
        self._redis = redis
        self.store = store
        self._topic_prefix = topic_prefix

    async def end_session(self, user_id: UUID, session_id: str) -> None:
        """`session_id` of `user_id` ends: its refresh tokens die and its sockets close."""
        await self.store.end(user_id, session_id)
        await self.announce(EndedSession(user_id, session_id))

    async def end_other_sessions(self, user_id: UUID, keep: str) -> list[str]:
        """Every session of `user_id` but `keep` ends (a password change: the caller's session
        stays); the ids of those that ended."""
        ended = [session_id for session_id in await self.store.sessions(user_id) if session_id != keep]
        for session_id in ended:
            await self.end_session(user_id, session_id)
        return ended

    async def end_user_sessions(self, user_id: UUID) -> None:
        """Every session of `user_id` ends: all their refresh tokens die, all their sockets close."""
        await self.store.end_user(user_id)
        await self.announce(EndedSession(user_id, ALL_SESSIONS))

    async def announce(self, ended: EndedSession) -> None:
        """Tell the instances with sockets of `ended.user_id` (the family is already dead). A
        failed publish is logged, not raised: the session did end, and the instances' family
        checks close its sockets anyway, a few seconds later."""
        user_id = str(ended.user_id)
        route = Route(user_id, ended.session_id, session_end=True)
        try:
            await self._redis.publish(channel_name(self._topic_prefix, user_id), encode_message(route))
        except (RedisError, OSError) as error:
            log.warning("cannot announce the end of session %s of user %s: %r", ended.session_id, user_id, error)


SESSION_ENDS = web.AppKey("session_ends", SessionEnds)
