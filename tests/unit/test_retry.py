"""The workers' one retry helper: bounded, jittered, and `GaveUp` at the end."""

from __future__ import annotations

import asyncio

import pytest

from runtime import retry
from runtime.retry import GaveUp, retrying


async def test_pauses_are_drawn_below_a_doubling_ceiling(monkeypatch: pytest.MonkeyPatch) -> None:
    pauses: list[float] = []

    async def no_sleep(seconds: float) -> None:
        pauses.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", no_sleep)

    async def broken() -> None:
        raise OSError("refused")

    with pytest.raises(GaveUp, match="broken: failed 4 times"):
        await retrying(broken, what="broken", attempts=4, first_pause_s=1.0, retry_on=(OSError,))
    assert len(pauses) == 3
    assert all(0 <= pause <= ceiling for pause, ceiling in zip(pauses, (1.0, 2.0, 4.0), strict=True))
    assert retry.MAX_PAUSE_S >= 4.0


async def test_success_after_failures_is_returned_and_other_errors_pass_through() -> None:
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise OSError("refused")
        return "done"

    assert await retrying(flaky, what="flaky", attempts=3, first_pause_s=0.001, retry_on=(OSError,)) == "done"
    calls.clear()
    work = lambda: flaky()  # noqa: E731, PLW0108  what callers pass: a lambda returning a coroutine
    assert await retrying(work, what="a lambda", attempts=3, first_pause_s=0.001, retry_on=(OSError,)) == "done"

    async def buggy() -> None:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        await retrying(buggy, what="buggy", attempts=3, first_pause_s=0.001, retry_on=(OSError,))
