"""`runtime.stream_batches`: Faust's window while events keep coming, none after a lull, no idle
timer; run on Faust's in-memory agent test context (no broker)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import faust
from faust.types import EventT

from runtime.stream_batches import batches

WITHIN_S = 0.3
HANDLING_S = 0.05


@dataclass
class Seen:
    """What the agent saw: each batch's values and when it got them, its events, its waits."""

    batches: list[tuple[float, list[int]]] = field(default_factory=list)
    events: list[EventT[Any]] = field(default_factory=list)
    waits: int = 0
    fail_on: int | None = None


@asynccontextmanager
async def agent_batching(max_: int) -> AsyncIterator[tuple[Callable[[int], Awaitable[None]], Seen]]:
    """An agent that takes `batches(max_, WITHIN_S)` and spends HANDLING_S on each; yields `put`."""
    app = faust.App("stream-batches-test", broker="kafka://127.0.0.1:1", store="memory://")
    seen = Seen()

    async def take(agent_stream: faust.StreamT[int]) -> None:
        stream = cast(faust.Stream[int], agent_stream)
        waits = stream.wait_for_stopped

        async def counted(*args: Any, **kwargs: Any) -> bool:
            seen.waits += 1
            return await waits(*args, **kwargs)

        stream.wait_for_stopped = counted  # type: ignore[method-assign]
        async for batch in batches(stream, max_, WITHIN_S):
            values = [cast(int, event.value) for event in batch]
            seen.batches.append((time.monotonic(), values))
            seen.events.extend(batch)
            if seen.fail_on in values:
                raise RuntimeError("this batch cannot be handled")
            await asyncio.sleep(HANDLING_S)

    agent: faust.types.AgentT[Any] = app.agent(name="take")(take)
    async with agent.test_context() as running:

        async def put(value: int) -> None:
            await running.put(value, wait=False)

        yield put, seen


async def test_an_event_after_a_lull_is_handed_over_at_once_and_later_ones_wait_for_the_window() -> None:
    async with agent_batching(max_=10) as (put, seen):
        sent_at = time.monotonic()
        await put(1)
        await asyncio.sleep(0.01)
        await put(2)
        await put(3)
        await asyncio.sleep(WITHIN_S + 0.3)

    (first_at, first), (second_at, second) = seen.batches
    assert first == [1]
    assert first_at - sent_at < WITHIN_S / 2
    assert second == [2, 3]
    first_handled_at = first_at + HANDLING_S
    assert second_at - first_handled_at >= WITHIN_S * 0.9


async def test_a_full_batch_is_not_held_for_the_window() -> None:
    async with agent_batching(max_=3) as (put, seen):
        for value in range(1, 8):
            await put(value)
        await asyncio.sleep(3 * HANDLING_S + WITHIN_S + 0.3)

    assert [values for _, values in seen.batches] == [[1, 2, 3], [4, 5, 6], [7]]
    (first_at, _), (second_at, _), (third_at, _) = seen.batches
    assert second_at - first_at < WITHIN_S / 2
    assert third_at - second_at >= WITHIN_S * 0.9


async def test_events_are_acked_once_handled_and_never_when_their_batch_failed() -> None:
    async with agent_batching(max_=10) as (put, seen):
        await put(1)
        await asyncio.sleep(HANDLING_S / 2)
        assert [event.message.acked for event in seen.events] == [False]
        await asyncio.sleep(HANDLING_S + 0.05)
        assert [event.message.acked for event in seen.events] == [True]

        seen.fail_on = 2
        await asyncio.sleep(WITHIN_S)
        await put(2)
        await asyncio.sleep(0.1)

    assert [values for _, values in seen.batches] == [[1], [2]]
    assert [event.message.acked for event in seen.events] == [True, False]


async def test_an_idle_stream_sets_no_timer() -> None:
    async with agent_batching(max_=10) as (put, seen):
        await put(1)
        await asyncio.sleep(HANDLING_S + WITHIN_S)
        waits_before = seen.waits
        await asyncio.sleep(5 * WITHIN_S)
        idle_waits = seen.waits - waits_before

    assert seen.batches[0][1] == [1]
    assert idle_waits == 0
