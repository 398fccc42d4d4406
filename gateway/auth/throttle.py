"""Attempt counters in Redis: login attempts and registrations, per account and address.

A login attempt is reserved before its password is verified: one Lua script counts it against
the folded username and the client's address group at once, or refuses it (429 with the seconds
left) when either is at its limit. Counting before verifying is what makes the limit hold under
concurrency: fifty guesses sent at once find the counters already taken by the first five, so
only five passwords are ever verified. A right password then gives its attempts back (the
username's counter is reset, the address's attempt returned), so what remains counted are the
failures. Windows are fixed and start at the first attempt they count.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Sequence

import redis.asyncio as aioredis

from gateway.rest.errors import rate_limited
from schemas.models import fold_username

MAX_FAILURES_PER_USERNAME = 5
"""Five wrong passwords for one account in a window: more than typos, too few for guessing."""
MAX_FAILURES_PER_ADDRESS = 20
"""Higher than per username: one address may be a NAT or an office with many honest users, while
this limit is what stops one client from spraying a common password over many accounts."""
WINDOW_SECONDS = 15 * 60
"""How long attempts count, from the first one; also the longest `Retry-After` a client sees."""
IPV6_PREFIX = 64
"""One IPv6 host usually owns a whole /64: counting single addresses there would count nothing."""

DEFAULT_PREFIX = "auth:throttle:"

_RESERVE = """
local window = tonumber(ARGV[1])
local wait = 0
for i, key in ipairs(KEYS) do
  if tonumber(redis.call('GET', key) or '0') >= tonumber(ARGV[i + 1]) then
    local left = redis.call('PTTL', key)
    if left < 0 then left = window end
    if left > wait then wait = left end
  end
end
if wait > 0 then return wait end
for _, key in ipairs(KEYS) do
  if redis.call('INCR', key) == 1 or redis.call('PTTL', key) < 0 then
    redis.call('PEXPIRE', key, window)
  end
end
return 0
"""
"""KEYS: counters. ARGV: the window (ms), then each counter's limit. Counts one attempt on every
counter, or on none when one is at its limit; returns 0, or the ms until the fullest one ends."""

_GIVE_BACK = """
for _, key in ipairs(KEYS) do
  if tonumber(redis.call('GET', key) or '0') > 0 then redis.call('DECR', key) end
end
return 0
"""
"""KEYS: counters to take one attempt off (never below zero; their windows stay)."""


class AttemptCounters:
    """Fixed-window counters of attempts in one Redis; `reserve` is atomic over all its keys."""

    def __init__(self, redis: aioredis.Redis, window_seconds: float) -> None:
        self._redis = redis
        self._window_ms = max(1, int(window_seconds * 1000))
        self._reserve = redis.register_script(_RESERVE)
        self._give_back = redis.register_script(_GIVE_BACK)

    async def reserve(self, keys: Sequence[str], limits: Sequence[int], message: str) -> None:
        """Count one attempt on each key, or raise 429 `rate_limited` with `Retry-After` (and
        count nothing) when any key is already at its limit."""
        wait_ms = int(await self._reserve(keys=list(keys), args=[self._window_ms, *limits]))
        if wait_ms > 0:
            raise rate_limited(math.ceil(wait_ms / 1000), message)

    async def give_back(self, keys: Sequence[str]) -> None:
        await self._give_back(keys=list(keys), args=[])

    async def forget(self, key: str) -> None:
        await self._redis.delete(key)


class LoginThrottle:
    """Login attempts per username and per address group, under `prefix`; the limits are
    parameters for tests."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        max_per_username: int = MAX_FAILURES_PER_USERNAME,
        max_per_address: int = MAX_FAILURES_PER_ADDRESS,
        window_seconds: float = WINDOW_SECONDS,
    ) -> None:
        self._counters = AttemptCounters(redis, window_seconds)
        self._prefix = prefix
        self._limits = (max_per_username, max_per_address)

    async def reserve(self, username: str, address: str) -> None:
        """Before verifying a password: count the attempt, or raise 429 `rate_limited`."""
        keys = (self._username_key(username), self._address_key(address))
        await self._counters.reserve(keys, self._limits, "too many failed logins, try again later")

    async def succeeded(self, username: str, address: str) -> None:
        """The password was right: the username's failures are forgiven and the address gets
        this attempt back, so that only failures stay counted there.

        The address's other attempts stay: otherwise whoever owns one account could clear their
        address by logging into it between guesses at other accounts.
        """
        await self._counters.forget(self._username_key(username))
        await self._counters.give_back([self._address_key(address)])

    async def undecided(self, username: str, address: str) -> None:
        """The password could not be checked (a dependency failed): the attempt is no failure."""
        await self._counters.give_back([self._username_key(username), self._address_key(address)])

    def _username_key(self, username: str) -> str:
        """Whitespace around a typed name is no new name to guess at: it counts with the name."""
        return f"{self._prefix}user:{fold_username(username.strip())}"

    def _address_key(self, address: str) -> str:
        return f"{self._prefix}addr:{address_group(address)}"


class RegisterThrottle:
    """Registrations per address group in a fixed window: each costs an argon2id hash and an
    event kept forever, so one client may not make accounts by the thousand."""

    def __init__(self, redis: aioredis.Redis, *, prefix: str, limit: int, window_seconds: float) -> None:
        self._counters = AttemptCounters(redis, window_seconds)
        self._prefix = prefix
        self._limit = limit

    async def reserve(self, address: str) -> None:
        """Count a registration attempt of `address`, or raise 429 `rate_limited`."""
        key = f"{self._prefix}addr:{address_group(address)}"
        await self._counters.reserve([key], [self._limit], "too many registrations from this address, try again later")


def address_group(address: str) -> str:
    """The unit an address is counted in: itself for IPv4, its /64 for IPv6, the raw text otherwise."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_PREFIX), strict=False))
    return str(ip)
