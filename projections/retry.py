"""Bounded retries with exponential backoff for the database work of the projections."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

log = logging.getLogger(__name__)

T = TypeVar("T")

ATTEMPTS = 6
FIRST_DELAY = 0.25
"""Seconds before the second attempt, doubled each time: about 8 s of waiting in all, enough for a
failover or a restart of PostgreSQL, short enough that a worker that cannot write stops soon."""

TRANSIENT: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
    asyncio.TimeoutError,
)


class GaveUp(Exception):
    """The database work failed on every attempt."""


async def with_retries(
    work: Callable[[], Awaitable[T]],
    what: str,
    attempts: int = ATTEMPTS,
    first_delay: float = FIRST_DELAY,
) -> T:
    """The result of `work()`, tried up to `attempts` times while it fails with a database error."""
    delay = first_delay
    for attempt in range(1, attempts + 1):
        try:
            return await work()
        except TRANSIENT as error:
            if attempt == attempts:
                raise GaveUp(f"{what}: failed {attempts} times, last: {error!r}") from error
            log.warning(
                "%s: attempt %d of %d failed (%r), retrying in %.2fs", what, attempt, attempts, error, delay
            )
            await asyncio.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")
