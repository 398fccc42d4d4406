"""The one retry policy of every process: pauses growing exponentially with full jitter (each
pause drawn uniformly below its ceiling, so that processes that failed together do not retry
together), one warning per failed attempt, and `GaveUp` when every attempt failed. The caller then
stops its worker deliberately (exit 70: cannot append to Kafka; 75: cannot write PostgreSQL), never
skips the work.

`retrying` makes a bounded number of attempts (the workers' appends and writes); `Backoff` paces
a loop that runs for the life of its process and retries for as long as it takes (the gateway's
consumers and listeners), with the same pauses.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    RetryError,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_PAUSE_S = 10.0
"""No single pause is longer: a worker waits for a restarted dependency, not for an outage."""


class GaveUp(Exception):
    """The work failed on every attempt."""


async def retrying(
    work: Callable[[], Awaitable[T]],
    *,
    what: str,
    attempts: int,
    first_pause_s: float,
    retry_on: tuple[type[BaseException], ...],
) -> T:
    """The result of `work()`, tried up to `attempts` times while it raises one of `retry_on`.

    The pause after the n-th failure is drawn from [0, first_pause_s * 2**(n-1)] (at most
    `MAX_PAUSE_S`): on average half of the doubling schedule it replaces.
    """

    def warn(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        pause = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "%s: attempt %d of %d failed (%r), retrying in %.2fs", what, state.attempt_number, attempts, error, pause
        )

    retry = AsyncRetrying(
        stop=stop_after_attempt(attempts),
        wait=wait_random_exponential(multiplier=first_pause_s, max=MAX_PAUSE_S),
        retry=retry_if_exception_type(retry_on),
        before_sleep=warn,
    )

    async def attempt() -> T:
        """Awaits `work()` itself: tenacity would take a lambda returning a coroutine for a
        function that returns a value, and hand back the coroutine un-awaited."""
        return await work()

    try:
        return await retry(attempt)
    except RetryError as error:
        last = error.last_attempt.exception()
        raise GaveUp(f"{what}: failed {attempts} times, last: {last!r}") from last


class Backoff:
    """The pauses of a loop that retries for as long as it takes (a consumer, a listener): the
    same full-jitter exponential pauses as `retrying` (tenacity's `wait_random_exponential`),
    started over by `reset()` once the loop succeeds again.

    Not an `AsyncRetrying` around each poll: that costs ~20 us a call, on paths that run once per
    message; this costs nothing until something fails.
    """

    def __init__(self, first_pause_s: float, max_pause_s: float = MAX_PAUSE_S) -> None:
        self._wait = wait_random_exponential(multiplier=first_pause_s, max=max_pause_s)
        self._state = RetryCallState(AsyncRetrying(), None, (), {})

    def next_pause(self) -> float:
        """The pause after one more failure: drawn from [0, first * 2**(failures - 1)], at most the cap."""
        pause = self._wait(self._state)
        self._state.attempt_number += 1
        return pause

    def reset(self) -> None:
        self._state.attempt_number = 1
