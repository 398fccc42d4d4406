"""Refresh tokens: opaque, server-side, rotated on every use, with reuse detection by family.

A login starts a *family*; each refresh retires the presented token (kept as `used`) and hands out
the next one of the same family. A retired token presented again means two parties hold the chain
(the client and a thief, and we cannot tell which is which), so the whole family dies: the newest
token too. Access tokens already issued live until they expire (contract v1, Auth).

Redis holds, with no plain token anywhere (only its SHA-256):

- `{prefix}token:{sha256}`: a hash `user`, `family`, `state` (`live` | `used`), expiring after the
  refresh TTL counted from its issue. Used tokens stay until then so that their reuse is seen.
- `{prefix}family:{id}`: the user id, while the family lives. Its TTL is renewed at each rotation;
  deleting it kills every token of the family at once, whatever their number.

The rotation script computes the family key from the token it reads, so it assumes one Redis
(not a cluster), which is what the gateway uses.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from typing import Any
from uuid import UUID

import redis.asyncio as aioredis

from gateway.errors import invalid_token

DEFAULT_PREFIX = "auth:refresh:"
TOKEN_BYTES = 32
MAX_TOKEN_LENGTH = 128
"""`token_urlsafe(32)` is 43 characters; anything much longer is not ours and needs no round trip."""

_ROTATE = """
local token = redis.call('HMGET', KEYS[1], 'user', 'family', 'state')
if not token[1] then
  return {'unknown'}
end
local family_key = ARGV[1] .. token[2]
if redis.call('EXISTS', family_key) == 0 then
  return {'revoked'}
end
if token[3] ~= 'live' then
  redis.call('DEL', family_key)
  return {'reused'}
end
redis.call('HSET', KEYS[1], 'state', 'used')
redis.call('HSET', KEYS[2], 'user', token[1], 'family', token[2], 'state', 'live')
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('PEXPIRE', family_key, ARGV[2])
return {'rotated', token[1]}
"""
"""Reads the presented token and, in the same atomic step, either retires it and stores its
successor, or (if it was already retired) kills its family. Two concurrent refreshes with one token
cannot both succeed: the second finds it `used`."""


class RefreshTokenStore:
    """Refresh tokens of every user in one Redis, under `prefix`."""

    def __init__(self, redis: aioredis.Redis, ttl_seconds: float, *, prefix: str = DEFAULT_PREFIX) -> None:
        """`ttl_seconds` is the gateway's `refresh_token_ttl_seconds`; tests pass a fraction of a second."""
        self._redis = redis
        self._ttl_ms = max(1, int(ttl_seconds * 1000))
        self._prefix = prefix
        self._rotate = redis.register_script(_ROTATE)

    async def issue(self, user_id: UUID) -> str:
        """A refresh token opening a new family (a new session) for `user_id`."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        family = uuid.uuid4().hex
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._family_key(family), str(user_id), px=self._ttl_ms)
            pipe.hset(self._token_key(token), mapping={"user": str(user_id), "family": family, "state": "live"})
            pipe.pexpire(self._token_key(token), self._ttl_ms)
            await pipe.execute()
        return token

    async def rotate(self, token: str) -> tuple[UUID, str]:
        """The user `token` belongs to and the token that replaces it.

        Raises `ApiError` 401 `invalid_token` for an unknown, expired or revoked token, and for a
        token already rotated, whose whole family is then revoked.
        """
        if not _plausible(token):
            raise invalid_token("invalid refresh token")
        successor = secrets.token_urlsafe(TOKEN_BYTES)
        reply = await self._rotate(
            keys=[self._token_key(token), self._token_key(successor)],
            args=[self._prefix + "family:", self._ttl_ms],
        )
        outcome = [_text(part) for part in reply]
        if outcome[0] != "rotated":
            raise invalid_token("invalid refresh token")
        return UUID(outcome[1]), successor

    async def revoke(self, token: str) -> None:
        """Logout: the session of `token` ends, every token of its family with it.

        An unknown or already dead token is not an error: the caller wants it dead and it is.
        """
        if not _plausible(token):
            return
        family = await self._redis.hget(self._token_key(token), "family")
        async with self._redis.pipeline(transaction=True) as pipe:
            if family is not None:
                pipe.delete(self._family_key(_text(family)))
            pipe.delete(self._token_key(token))
            await pipe.execute()

    def _token_key(self, token: str) -> str:
        return f"{self._prefix}token:{hashlib.sha256(token.encode()).hexdigest()}"

    def _family_key(self, family: str) -> str:
        return f"{self._prefix}family:{family}"


def _plausible(token: str) -> bool:
    return 0 < len(token) <= MAX_TOKEN_LENGTH


def _text(value: Any) -> str:
    """Redis replies are bytes unless the client decodes them; accept both."""
    return value.decode() if isinstance(value, bytes) else str(value)
