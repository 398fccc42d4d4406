"""One write budget per user, shared by REST and WebSocket (contract v1.1, "Write budget").

Every write a user makes (a REST write, a WebSocket `message.send`, `message.edit`,
`message.delete`, `read` or `typing` frame) takes one unit from a budget kept in Redis, so that it
holds across the user's sockets, reconnects and every gateway instance. The budget is a GCRA
(generic cell rate algorithm: a token bucket kept as one number, the theoretical arrival time of
the next write): `WRITE_RATE_PER_S` on average, `WRITE_BURST` at once. One Lua script decides and
records, with Redis's own clock, so instances whose clocks differ still share one budget.

Redis unreachable: the write is refused as `unavailable` (503 with `Retry-After` over REST), as
everything else that needs Redis is: a budget that let writes through whenever Redis is slow
would be a budget an attacker can switch off by making it slow.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import Counter

from gateway.infra.resources import REDIS, SETTINGS

_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local next_tat = tat + interval * cost
local wait = next_tat - interval * burst - now
if wait > 0.01 then return math.ceil(wait) end
redis.call('SET', KEYS[1], string.format('%.3f', next_tat), 'PX', math.ceil(next_tat - now) + 1)
return 0
"""
"""KEYS: the user's budget. ARGV: ms per write (1000 / rate), burst, cost (writes taken, at most
burst). Takes them all, or none: returns 0, or the ms until they are free. The key expires once
the budget is full again."""

REFUSED = Counter(
    "gateway_writes_rate_limited_total", "Writes refused for being over their user's write budget", ["via"]
)


class WriteBudget:
    def __init__(self, redis: aioredis.Redis, prefix: str, rate_per_s: float, burst: int) -> None:
        self._prefix = f"{prefix}limits:writes:"
        self._interval_ms = 1000.0 / rate_per_s
        self._burst = burst
        self._take = redis.register_script(_TAKE)

    async def take(self, user_id: str, cost: int = 1) -> int:
        """Spend `cost` writes of `user_id` (at most the burst): 0 if they were there, else the ms
        until they will be."""
        cost = max(1, min(cost, self._burst))
        return int(await self._take(keys=[self._prefix + user_id], args=[self._interval_ms, self._burst, cost]))


WRITE_BUDGET = web.AppKey("write_budget", WriteBudget)


async def limits_ctx(app: web.Application) -> AsyncIterator[None]:
    """A cleanup_ctx, after the Redis client."""
    settings = app[SETTINGS]
    app[WRITE_BUDGET] = WriteBudget(app[REDIS], settings.topic_prefix, settings.write_rate_per_s, settings.write_burst)
    yield


GROUP_MEMBERS_PER_WRITE = 50
"""A group's creation sends the whole Chat, member list included, to every member (contract
v1.1), so its bytes grow with the square of its size: 500 members write ~17 MB, what about eleven
4,000-character sends to that group write. It is charged one write per 50 members, plus one."""


def group_create_cost(members: int) -> int:
    """How many writes creating a group of `members` (the creator included) takes."""
    return 1 + members // GROUP_MEMBERS_PER_WRITE
