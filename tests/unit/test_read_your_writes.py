"""The gateway's projection watermarks: a write waits until every position it names is projected."""

from __future__ import annotations

import asyncio

from gateway.infra.consistency import ProjectionWatermarks
from schemas.commands import Position


def at(partition: int, offset: int) -> Position:
    return Position(topic="message.events", partition=partition, offset=offset)


async def test_each_waiter_wakes_once_its_offset_is_passed_and_not_before() -> None:
    marks = ProjectionWatermarks("postgresql://unused")
    waits = {offset: asyncio.create_task(marks.wait_for([at(0, offset)], timeout=5)) for offset in (7, 3, 5, 9)}
    await asyncio.sleep(0.02)
    marks._advance(("message.events", 0), 6)
    await asyncio.sleep(0.02)
    assert {o for o, t in waits.items() if t.done()} == {3, 5}
    marks._advance(("message.events", 1), 100)
    marks._advance(("message.events", 0), 5)
    await asyncio.sleep(0.02)
    assert {o for o, t in waits.items() if t.done()} == {3, 5}, "another partition or an older mark wakes nobody"
    marks._advance(("message.events", 0), 10)
    assert await asyncio.gather(*waits.values()) == [True, True, True, True]
    assert marks.waiters[("message.events", 0)] == []


async def test_a_write_already_projected_does_not_wait_and_one_never_projected_times_out() -> None:
    marks = ProjectionWatermarks("postgresql://unused")
    marks._advance(("message.events", 2), 50)
    assert await marks.wait_for([at(2, 49)], timeout=0.01) is True
    assert await marks.wait_for([at(2, 49), at(3, 0)], timeout=0.01) is False
    marks._advance(("message.events", 3), 1)
    assert marks.waiters[("message.events", 3)] == [], "a timed-out waiter is dropped when passed"
