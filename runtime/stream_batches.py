"""Batches of a Faust stream: Faust's window under load, no timer while idle, no wait after a lull.

Faust's `Stream.take_events(max_, within)` wakes up every `within` seconds whether anything came
or not (a few tasks made and dropped each time: a few percent of a core per idle worker), and an
event that arrives after a quiet spell waits for the next tick. `batches` keeps the window where
it pays, under load: after a batch is handled, the next one is yielded `within` later (or as soon
as `max_` events are buffered), exactly as `take_events` would. Where nothing came for a whole
window, it sleeps until an event comes and yields it at once: a lone message does not wait.

Yielding at once under load instead (the events that came while the last batch was handled) was
tried: smaller batches cost more produce and fetch requests per message than they saved in
waiting, and the workers fell behind at 300–400 msg/s (docs/benchmarks.md, "The evening round").

It buffers the way `take_events` does (a processor on the stream, consumed passively) and acks a
batch's events once the caller asks for the next batch: never before it handled them, and never
when it raised instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import faust
from faust.types import EventT, StreamT
from mode.utils.aiter import aiter


class _Buffer:
    """The events a stream's processor has added and the caller has not taken yet."""

    def __init__(self, stream: faust.Stream[Any], max_: int) -> None:
        self.stream = stream
        self.max = max_
        self.events: list[EventT[Any]] = []
        self.arrived = asyncio.Event()
        self.full = asyncio.Event()
        self.room = asyncio.Event()
        self.room.set()

    async def add(self, value: Any) -> Any:
        """The stream's processor: keeps the event of `value`, waiting while `max_` are kept."""
        event = self.stream.current_event
        if event is None:
            raise RuntimeError("a buffered value without its event")
        while len(self.events) >= self.max and not self.stream.should_stop:
            self.room.clear()
            await self.stream.wait_for_stopped(self.room)  # type: ignore[arg-type]
        self.events.append(event)
        self.arrived.set()
        if len(self.events) >= self.max:
            self.full.set()
        return value

    def take(self) -> list[EventT[Any]]:
        taken, self.events = self.events, []
        self.full.clear()
        self.room.set()
        return taken


async def batches(agent_stream: StreamT[Any], max_: int, within: float) -> AsyncIterator[list[EventT[Any]]]:
    """Lists of at most `max_` events: `within` seconds after the last one was handled while events
    keep coming, at once when one comes after a window with none."""
    stream = cast(faust.Stream[Any], agent_stream)
    buffer = _Buffer(stream, max_)
    loop = asyncio.get_running_loop()
    enable_acks = stream.enable_acks
    stream.enable_acks = False
    stream.add_processor(buffer.add)
    stream._enable_passive(aiter(stream.channel))  # type: ignore[arg-type]
    window_ends = loop.time()
    try:
        while not stream.should_stop:
            if not buffer.events:
                buffer.arrived.clear()
                await stream.wait_for_stopped(buffer.arrived)  # type: ignore[arg-type]
                continue
            remaining = window_ends - loop.time()
            if remaining > 0 and not buffer.full.is_set():
                await stream.wait_for_stopped(buffer.full, timeout=remaining)  # type: ignore[arg-type]
            batch = buffer.take()
            yield batch
            for event in batch:
                await stream.ack(event)
            window_ends = loop.time() + within
    finally:
        stream.enable_acks = enable_acks
        stream._processors.remove(buffer.add)
