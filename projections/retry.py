"""The projections' retry policy for their database work (the helper is `runtime.retry`'s)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from runtime.retry import GaveUp, retrying

__all__ = ["ATTEMPTS", "FIRST_DELAY", "TRANSIENT", "GaveUp", "with_retries"]

T = TypeVar("T")

ATTEMPTS = 6
FIRST_DELAY = 0.5
"""The ceiling of the first pause, doubled each time; with full jitter about 8 s of waiting in all
on average (at most 15 s), enough for a failover or a restart of PostgreSQL, short enough that a
worker that cannot write stops soon."""

TRANSIENT: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
    asyncio.TimeoutError,
)


async def with_retries(
    work: Callable[[], Awaitable[T]],
    what: str,
    attempts: int = ATTEMPTS,
    first_delay: float = FIRST_DELAY,
) -> T:
    """The result of `work()`, tried up to `attempts` times while it fails with a database error;
    `GaveUp` when every attempt failed."""
    return await retrying(work, what=what, attempts=attempts, first_pause_s=first_delay, retry_on=TRANSIENT)
