"""Who has which sockets on which gateway instance, in Redis, and the presence that follows from it.

Keys (under the deployment's prefix, `{TOPIC_PREFIX}ws:`):

- `sessions:<user_id>`: a sorted set of `<instance_id>|<connection_id>`, scored by the time (ms)
  the session expires unless its instance renews it;
- `expiries`: the same sessions of every user, as `<user_id>|<instance_id>|<connection_id>`,
  scored alike, so that expired ones are found without scanning users.

Each instance renews its sessions every `HEARTBEAT_S`; a session not renewed for `SESSION_TTL_S`
is expired. Both keys expire with their last renewal, so a deployment with no instance left
leaves nothing behind. A user is online while they have a session that has not expired. Opening, closing and
sweeping are Lua scripts, so "this was the user's first session" and "this was their last" are
decided atomically across instances: exactly one caller learns each change, and announces it.
A crashed instance's sessions expire on their own, and whichever instance sweeps first announces
the users who went offline with them.

The scripts name keys they compute (one user's set from the index), so they assume one Redis
(not a cluster), as `gateway.auth.refresh_tokens` does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from schemas.codec import as_str

HEARTBEAT_S = 10.0
SESSION_TTL_S = 30.0
"""Three heartbeats: one late or lost renewal does not make anyone look offline."""
SWEEP_BATCH = 500

_OPEN = """
local now, expires, ttl, cap = ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local live = redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
if cap > 0 and live >= cap then
  local soonest = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  return -math.max(1, tonumber(soonest[2]) - tonumber(now))
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], expires, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('ZADD', KEYS[2], expires, ARGV[2])
redis.call('PEXPIRE', KEYS[2], ttl)
if live == 0 then return 1 end
return 0
"""
"""KEYS: the user's set, the index. ARGV: member, index member, now, expiry, ttl (ms), cap (0: none).
Returns 1 if the user had no live session before: they just came online; 0 if they had; minus
the ms until their soonest session expires unless renewed if they already hold `cap` live ones
(nothing is recorded then). Counting and adding in one script is what keeps two instances from
both letting in the one socket over the cap; a crashed instance's sessions stop counting when they
expire."""

_CLOSE = """
local now = ARGV[3]
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[2])
if removed == 0 then return 0 end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) == 0 then return 1 end
return 0
"""
"""KEYS: the user's set, the index. ARGV: member, index member, now (ms).
Returns 1 if that was the user's last live session: they just went offline. A session already
swept returns 0 (the sweeper announced it). Expired members of the user are dropped here, so the
sweeper does not announce the same user again."""

_RENEW = """
local expires, ttl, prefix = ARGV[1], ARGV[2], ARGV[3]
local missing = {}
local i = 4
while i < #ARGV do
  local user, member = ARGV[i], ARGV[i + 1]
  local key = prefix .. user
  if redis.call('ZSCORE', key, member) then
    redis.call('ZADD', key, 'XX', expires, member)
    redis.call('PEXPIRE', key, ttl)
    redis.call('ZADD', KEYS[1], 'XX', expires, user .. '|' .. member)
    redis.call('PEXPIRE', KEYS[1], ttl)
  else
    table.insert(missing, user)
    table.insert(missing, member)
  end
  i = i + 2
end
return missing
"""
"""KEYS: the index. ARGV: expiry, ttl (ms), sessions key prefix, then (user, member) pairs.
Renews the sessions that still exist; returns the pairs that do not (swept while this instance
was too slow to renew them, or closed meanwhile): the caller opens those still open again."""

_SWEEP = """
local now, limit, prefix = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit)
local offline, seen = {}, {}
for _, entry in ipairs(expired) do
  redis.call('ZREM', KEYS[1], entry)
  local bar = string.find(entry, '|', 1, true)
  local user = string.sub(entry, 1, bar - 1)
  local key = prefix .. user
  if redis.call('ZREM', key, string.sub(entry, bar + 1)) == 1 then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    if redis.call('ZCARD', key) == 0 and not seen[user] then
      seen[user] = true
      table.insert(offline, user)
    end
  end
end
return {#expired, offline}
"""
"""KEYS: the index. ARGV: now (ms), limit, sessions key prefix.
Removes up to `limit` expired sessions; returns how many, and the users left with none."""


class TooManySessions(Exception):
    """The user already holds the most sessions allowed."""

    def __init__(self, retry_after_ms: int) -> None:
        super().__init__(f"too many sessions; one may expire in {retry_after_ms} ms")
        self.retry_after_ms = retry_after_ms


@dataclass(frozen=True)
class Session:
    user_id: str
    connection_id: str


class SessionStore:
    def __init__(
        self,
        redis: aioredis.Redis,
        prefix: str,
        instance_id: str,
        ttl_s: float = SESSION_TTL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._prefix = f"{prefix}ws:"
        self._instance = instance_id
        self._ttl_ms = int(ttl_s * 1000)
        self._clock = clock
        self._open = redis.register_script(_OPEN)
        self._close = redis.register_script(_CLOSE)
        self._renew = redis.register_script(_RENEW)
        self._sweep = redis.register_script(_SWEEP)

    @property
    def index_key(self) -> str:
        return self._prefix + "expiries"

    def user_key(self, user_id: str) -> str:
        return f"{self._prefix}sessions:{user_id}"

    async def open(self, session: Session, cap: int = 0) -> bool:
        """Record a session; True if its user just came online. With a `cap`, a user who already
        has that many live sessions gets `TooManySessions` and nothing is recorded."""
        now = self._now_ms()
        answer = int(
            await self._open(
                keys=[self.user_key(session.user_id), self.index_key],
                args=[self._member(session), self._index_member(session), now, now + self._ttl_ms, self._ttl_ms, cap],
            )
        )
        if answer < 0:
            raise TooManySessions(-answer)
        return answer == 1

    async def close(self, session: Session) -> bool:
        """Forget a session; True if its user just went offline."""
        went_offline = await self._close(
            keys=[self.user_key(session.user_id), self.index_key],
            args=[self._member(session), self._index_member(session), self._now_ms()],
        )
        return bool(went_offline)

    async def renew(self, sessions: Iterable[Session]) -> list[Session]:
        """Push back the expiry of `sessions`; the ones Redis no longer has."""
        pairs: list[Any] = []
        for s in sessions:
            pairs += [s.user_id, self._member(s)]
        if not pairs:
            return []
        expires = self._now_ms() + self._ttl_ms
        missing = await self._renew(
            keys=[self.index_key], args=[expires, self._ttl_ms, self._prefix + "sessions:", *pairs]
        )
        texts = [as_str(v) for v in missing]
        return [Session(texts[i], texts[i + 1].rpartition("|")[2]) for i in range(0, len(texts), 2)]

    async def sweep(self, batch: int = SWEEP_BATCH) -> list[str]:
        """Remove every expired session (of any instance); the users that left offline."""
        offline: list[str] = []
        while True:
            removed, users = await self._sweep(
                keys=[self.index_key], args=[self._now_ms(), batch, self._prefix + "sessions:"]
            )
            offline += [as_str(u) for u in users]
            if int(removed) < batch:
                return offline

    async def is_online(self, user_id: str) -> bool:
        return bool(await self.online_among([user_id]))

    async def online_among(self, user_ids: list[str]) -> list[str]:
        """Those of `user_ids` with a live session, in one round trip."""
        if not user_ids:
            return []
        now = f"({self._now_ms()}"
        async with self._redis.pipeline(transaction=False) as pipe:
            for user_id in user_ids:
                pipe.zcount(self.user_key(user_id), now, "+inf")
            counts = await pipe.execute()
        return [user_id for user_id, count in zip(user_ids, counts, strict=True) if count]

    def _member(self, session: Session) -> str:
        return f"{self._instance}|{session.connection_id}"

    def _index_member(self, session: Session) -> str:
        return f"{session.user_id}|{self._member(session)}"

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)
