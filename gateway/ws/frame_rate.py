"""Frames per user on this instance: a token bucket each, kept across the user's reconnects.

Every client frame, malformed ones too, takes a token before anything else is done with it
(`gateway.ws.handlers`); the writes among them also take from the user's write budget, shared
with REST and every instance (`gateway.infra.limits`).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

TOKEN_EPSILON = 1e-9
"""Refills are sums of float products: five refills of 0.2 may add up to 0.9999999999, which must
count as the whole token it stands for, or the bucket runs slower than its rate."""


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

    def wait_seconds(self) -> float:
        """How long until the bucket holds a whole token (0 if it does)."""
        self._refill()
        return max(0.0, (1 - TOKEN_EPSILON - self._tokens) / self._rate)

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


class UserBuckets:
    """One `TokenBucket` per user on this instance, kept after the user's last socket here closes
    until it would have refilled anyway: closing and reopening a socket gets the same bucket back,
    not a fresh (full) one. A bucket idle that long is as good as a new one, so forgetting it
    then gives nothing away and keeps memory to the users seen in the last seconds."""

    def __init__(self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._burst = burst
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._away: OrderedDict[str, float] = OrderedDict()
        """Users with no socket here, by when their last one closed, oldest first."""
        self._keep_s = burst / rate

    def __len__(self) -> int:
        return len(self._buckets)

    def get(self, user_id: str) -> TokenBucket:
        """The user's bucket, made on their first frame (not a new one per frame)."""
        self._forget_refilled()
        bucket = self._buckets.get(user_id)
        if bucket is None:
            bucket = self._buckets[user_id] = TokenBucket(self._rate, self._burst, clock=self._clock)
        return bucket

    def arrived(self, user_id: str) -> None:
        """The user has a socket here (again): keep their bucket while it is open."""
        self._away.pop(user_id, None)

    def left(self, user_id: str) -> None:
        """The user's last socket here closed."""
        self._away[user_id] = self._clock()
        self._away.move_to_end(user_id)
        self._forget_refilled()

    def _forget_refilled(self) -> None:
        now = self._clock()
        while self._away:
            user_id, since = next(iter(self._away.items()))
            if now - since < self._keep_s:
                return
            del self._away[user_id]
            self._buckets.pop(user_id, None)
