"""Refresh tokens: opaque, server-side, rotated on every use, with reuse detection by family.

A login starts a *family*, which is the session: its id is the `sid` of every access token issued
with it (`gateway.auth.tokens`), and sockets close when it ends. Each refresh retires the presented
token (kept as `used`) and hands out the next one of the same family. A retired token presented
again means two parties hold the chain
(the client and a thief, and we cannot tell which is which), so the whole family dies: the newest
token too. Access tokens already issued live until they expire (contract v1, Auth).

Redis holds, with no plain token anywhere (only its SHA-256):

- `{prefix}token:{sha256}`: a hash `user`, `family`, `state` (`live` | `used`), expiring after the
  refresh TTL counted from its issue. Used tokens stay until then so that their reuse is seen.
- `{prefix}family:{id}`: the user id, while the family lives. Its TTL is renewed at each rotation;
  deleting it kills every token of the family at once, whatever their number. A session is live
  exactly while this key exists: the gateways check it for their open sockets.
- `{prefix}user:{user_id}`: a sorted set of the user's family ids scored by their expiry (ms), so
  that every session of a user can be ended at once (`end_user`); expired ones are pruned at login.

The scripts compute the family and user keys from the token they read, so they assume one Redis
(not a cluster), which is what the gateway uses.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections.abc import Iterable
from typing import NamedTuple
from uuid import UUID

import redis.asyncio as aioredis
from aiohttp import web

from gateway.rest.errors import ApiError, invalid_token
from schemas.codec import as_str

DEFAULT_PREFIX = "auth:refresh:"
TOKEN_BYTES = 32
LIVE_BATCH = 500
"""Families asked about in one `EXISTS`."""
MAX_TOKEN_LENGTH = 128
"""`token_urlsafe(32)` is 43 characters; anything much longer is not ours and needs no round trip."""

_ROTATE = """
local token = redis.call('HMGET', KEYS[1], 'user', 'family', 'state')
if not token[1] then
  return {'unknown'}
end
local family_key = ARGV[1] .. 'family:' .. token[2]
local user_key = ARGV[1] .. 'user:' .. token[1]
if redis.call('EXISTS', family_key) == 0 then
  return {'revoked'}
end
if token[3] ~= 'live' then
  redis.call('DEL', family_key)
  redis.call('ZREM', user_key, token[2])
  return {'reused', token[1], token[2]}
end
redis.call('HSET', KEYS[1], 'state', 'used')
redis.call('HSET', KEYS[2], 'user', token[1], 'family', token[2], 'state', 'live')
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('PEXPIRE', family_key, ARGV[2])
redis.call('ZADD', user_key, ARGV[3], token[2])
redis.call('PEXPIRE', user_key, ARGV[2])
return {'rotated', token[1], token[2]}
"""
"""KEYS: the presented token's key, its successor's. ARGV: the key prefix, the TTL and the new
expiry (ms). Reads the presented token and, in the same atomic step, either retires it and stores
its successor, or (if it was already retired) kills its family. Two concurrent refreshes with one
token cannot both succeed: the second finds it `used`."""

_END_USER = """
local families = redis.call('ZRANGE', KEYS[1], 0, -1)
for _, family in ipairs(families) do
  redis.call('DEL', ARGV[1] .. 'family:' .. family)
end
redis.call('DEL', KEYS[1])
return families
"""
"""KEYS: the user's set of families. ARGV: the key prefix. Kills every family of the user."""


class Grant(NamedTuple):
    """A login's refresh token and the session (family) it opens."""

    token: str
    session_id: str


class Rotation(NamedTuple):
    """A refresh: whose token it was, its session (unchanged by rotation), the token replacing it."""

    user_id: UUID
    session_id: str
    token: str


class EndedSession(NamedTuple):
    user_id: UUID
    session_id: str


class FamilyReused(ApiError):
    """401 `invalid_token` for a retired refresh token presented again: its family was just killed,
    and the session it names has ended (its sockets must close)."""

    def __init__(self, ended: EndedSession) -> None:
        super().__init__(401, "invalid_token", "invalid refresh token")
        self.ended = ended


def key_prefix(topic_prefix: str) -> str:
    """The deployment's refresh token keys (what the gateway's `auth_ctx` uses)."""
    return f"{topic_prefix}auth:refresh:"


class RefreshTokenStore:
    """Refresh tokens of every user in one Redis, under `prefix`."""

    def __init__(self, redis: aioredis.Redis, ttl_seconds: float, *, prefix: str = DEFAULT_PREFIX) -> None:
        """`ttl_seconds` is the gateway's `refresh_token_ttl_seconds`; tests pass a fraction of a second."""
        self._redis = redis
        self._ttl_ms = max(1, int(ttl_seconds * 1000))
        self._prefix = prefix
        self._rotate = redis.register_script(_ROTATE)
        self._end_user = redis.register_script(_END_USER)

    async def issue(self, user_id: UUID) -> Grant:
        """A refresh token opening a new family (a new session) for `user_id`."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        family = uuid.uuid4().hex
        now_ms = _now_ms()
        user_key = self._user_key(str(user_id))
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._family_key(family), str(user_id), px=self._ttl_ms)
            pipe.hset(self._token_key(token), mapping={"user": str(user_id), "family": family, "state": "live"})
            pipe.pexpire(self._token_key(token), self._ttl_ms)
            pipe.zremrangebyscore(user_key, "-inf", now_ms)
            pipe.zadd(user_key, {family: now_ms + self._ttl_ms})
            pipe.pexpire(user_key, self._ttl_ms)
            await pipe.execute()
        return Grant(token, family)

    async def rotate(self, token: str) -> Rotation:
        """The user and session `token` belongs to and the token that replaces it.

        Raises `ApiError` 401 `invalid_token` for an unknown, expired or revoked token, and
        `FamilyReused` (the same 401) for a token already rotated, whose whole family is then
        revoked: the caller ends that session's sockets.
        """
        if not _plausible(token):
            raise invalid_token("invalid refresh token")
        successor = secrets.token_urlsafe(TOKEN_BYTES)
        reply = await self._rotate(
            keys=[self._token_key(token), self._token_key(successor)],
            args=[self._prefix, self._ttl_ms, _now_ms() + self._ttl_ms],
        )
        outcome = [as_str(part) for part in reply]
        if outcome[0] == "reused":
            raise FamilyReused(EndedSession(UUID(outcome[1]), outcome[2]))
        if outcome[0] != "rotated":
            raise invalid_token("invalid refresh token")
        return Rotation(UUID(outcome[1]), outcome[2], successor)

    async def revoke(self, token: str) -> EndedSession | None:
        """Logout: the session of `token` ends, every token of its family with it; which session
        that was (None for a token we do not know).

        An unknown or already dead token is not an error: the caller wants it dead and it is.
        """
        if not _plausible(token):
            return None
        user, family = await self._redis.hmget(self._token_key(token), ["user", "family"])
        async with self._redis.pipeline(transaction=True) as pipe:
            if user is not None and family is not None:
                pipe.delete(self._family_key(as_str(family)))
                pipe.zrem(self._user_key(as_str(user)), as_str(family))
            pipe.delete(self._token_key(token))
            await pipe.execute()
        if user is None or family is None:
            return None
        return EndedSession(UUID(as_str(user)), as_str(family))

    async def end(self, user_id: UUID, session_id: str) -> None:
        """The session `session_id` of `user_id` ends: every token of its family dies."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._family_key(session_id))
            pipe.zrem(self._user_key(str(user_id)), session_id)
            await pipe.execute()

    async def end_user(self, user_id: UUID) -> list[str]:
        """Every session of `user_id` ends (every refresh token of theirs dies); their ids."""
        families = await self._end_user(keys=[self._user_key(str(user_id))], args=[self._prefix])
        return [as_str(family) for family in families]

    async def sessions(self, user_id: UUID) -> list[str]:
        """The ids of the sessions of `user_id` that have not expired."""
        families = await self._redis.zrangebyscore(self._user_key(str(user_id)), _now_ms(), "+inf")
        return [as_str(family) for family in families]

    async def live(self, session_ids: Iterable[str]) -> set[str]:
        """Those of `session_ids` whose family still lives.

        One round trip: a multi-key `EXISTS` per `LIVE_BATCH` ids, which counts; only a batch
        whose count is neither all nor none (a session ended, rare) is asked again key by key.
        Measured on 10,000 live sessions: 2 ms of the gateway's CPU per 1,000, where one `EXISTS`
        per key cost 15 ms (`gateway.ws.session_watch` asks every 2 s).
        """
        ids = list(dict.fromkeys(session_ids))
        batches = [ids[i : i + LIVE_BATCH] for i in range(0, len(ids), LIVE_BATCH)]
        async with self._redis.pipeline(transaction=False) as pipe:
            for batch in batches:
                pipe.exists(*(self._family_key(session_id) for session_id in batch))
            counts = await pipe.execute()
        live: set[str] = set()
        short = []
        for batch, count in zip(batches, counts, strict=True):
            if count == len(batch):
                live.update(batch)
            elif count:
                short.extend(batch)
        if short:
            async with self._redis.pipeline(transaction=False) as pipe:
                for session_id in short:
                    pipe.exists(self._family_key(session_id))
                found = await pipe.execute()
            live.update(session_id for session_id, exists in zip(short, found, strict=True) if exists)
        return live

    def _token_key(self, token: str) -> str:
        return f"{self._prefix}token:{hashlib.sha256(token.encode()).hexdigest()}"

    def _family_key(self, family: str) -> str:
        return f"{self._prefix}family:{family}"

    def _user_key(self, user_id: str) -> str:
        return f"{self._prefix}user:{user_id}"


REFRESH_TOKENS = web.AppKey("refresh_tokens", RefreshTokenStore)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _plausible(token: str) -> bool:
    return 0 < len(token) <= MAX_TOKEN_LENGTH
