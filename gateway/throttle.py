"""Login throttling in Redis, and a token bucket for WebSocket frames.

Login failures are counted per username and per client address in fixed windows that start at
the first failure. The handler calls `check` before verifying a password, `record_failure` after a
wrong one and `reset` after a right one. Failures recorded between one attempt's `check` and its
`record_failure` by concurrent attempts may let a few extra guesses through; the bound stays
close to the limit and needs no lock.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable

import redis.asyncio as aioredis

from gateway.errors import rate_limited

MAX_FAILURES_PER_USERNAME = 5
"""Five wrong passwords for one account in a window: more than typos, too few for guessing."""
MAX_FAILURES_PER_ADDRESS = 20
"""Higher than per username: one address may be a NAT or an office with many honest users, while
this limit is what stops one client from spraying a common password over many accounts."""
WINDOW_SECONDS = 15 * 60
"""How long failures count, from the first one; also the longest `Retry-After` a client sees."""
IPV6_PREFIX = 64
"""One IPv6 host usually owns a whole /64: counting single addresses there would count nothing."""

DEFAULT_PREFIX = "auth:throttle:"

TOKEN_EPSILON = 1e-9
"""Refills are sums of float products: five refills of 0.2 may add up to 0.9999999999, which must
count as the whole token it stands for, or the bucket runs slower than its rate."""


class LoginThrottle:
    """Failure counters in one Redis, under `prefix`; the limits are parameters for tests."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        max_per_username: int = MAX_FAILURES_PER_USERNAME,
        max_per_address: int = MAX_FAILURES_PER_ADDRESS,
        window_seconds: float = WINDOW_SECONDS,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._max_per_username = max_per_username
        self._max_per_address = max_per_address
        self._window_ms = max(1, int(window_seconds * 1000))

    async def check(self, username: str, address: str) -> None:
        """Raise `ApiError` 429 `rate_limited`, with `Retry-After`, if either counter is at its limit."""
        keys = [self._username_key(username), self._address_key(address)]
        limits = [self._max_per_username, self._max_per_address]
        counts = await self._redis.mget(keys)
        over = [key for key, count, limit in zip(keys, counts, limits) if int(count or 0) >= limit]
        if over:
            raise rate_limited(await self._seconds_left(over), "too many failed logins, try again later")

    async def record_failure(self, username: str, address: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            for key in (self._username_key(username), self._address_key(address)):
                pipe.set(key, 0, px=self._window_ms, nx=True)
                pipe.incr(key)
            await pipe.execute()

    async def reset(self, username: str) -> None:
        """Forget a username's failures after a successful login.

        The address counter is kept: otherwise whoever owns one account could clear their address
        by logging into it between guesses at other accounts.
        """
        await self._redis.delete(self._username_key(username))

    async def _seconds_left(self, keys: list[str]) -> int:
        left_ms = [await self._redis.pttl(key) for key in keys]
        longest = max((ms if ms > 0 else self._window_ms) for ms in left_ms)
        return max(1, math.ceil(longest / 1000))

    def _username_key(self, username: str) -> str:
        return f"{self._prefix}user:{fold_username(username)}"

    def _address_key(self, address: str) -> str:
        return f"{self._prefix}addr:{address_group(address)}"


def fold_username(username: str) -> str:
    """Usernames are case-insensitive (contract v1, Auth): `Alice` and `alice` share one counter."""
    return username.strip().lower()


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


class TokenBucket:
    """At most `burst` events at once and `rate` per second on average, e.g. one user's frames.

    In memory and not thread-safe: one bucket per user per gateway, used from the event loop.
    """

    def __init__(self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock()

    def allow(self) -> bool:
        """Take one token if there is one."""
        self._refill()
        if self._tokens < 1 - TOKEN_EPSILON:
            return False
        self._tokens -= 1
        return True

    def credit(self, seconds: float) -> None:
        """Give back the tokens of `seconds` during which the server did not read the client
        (its frames waited in the socket's buffers, sent at a pace the bucket would have taken),
        even above `burst`, until they are spent: the server's stall is not the client's burst."""
        self._refill()
        self._tokens += max(0.0, seconds) * self._rate

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._updated)
        cap = max(self._burst, self._tokens)
        self._tokens = min(cap, self._tokens + elapsed * self._rate)
        self._updated = now
