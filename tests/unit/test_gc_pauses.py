"""Garbage-collector pauses: measured, and frozen survivors thawed often enough not to leak."""

from __future__ import annotations

import asyncio
import gc
import weakref
from types import SimpleNamespace
from typing import cast

import faust
from prometheus_client import REGISTRY

from runtime.faust_app import freeze_after_recovery, is_recovering
from runtime.gc_pauses import FreezeSchedule, measure_gc_pauses


class Node:
    link: Node | None = None


def test_every_collection_is_measured() -> None:
    measure_gc_pauses()
    measure_gc_pauses()
    count, seconds = full_collections()
    gc.collect()
    assert full_collections()[0] == count + 1, "observed once: the callback is installed once"
    assert full_collections()[1] > seconds


def full_collections() -> tuple[float, float]:
    """(count, seconds in all) of the full collections measured so far."""
    labels = {"generation": "2"}
    count = REGISTRY.get_sample_value("python_gc_pause_seconds_count", labels) or 0.0
    total = REGISTRY.get_sample_value("python_gc_pause_seconds_sum", labels) or 0.0
    return count, total


def test_a_cycle_frozen_while_alive_is_freed_by_the_next_thawing_round() -> None:
    try:
        node = Node()
        node.link = node
        alive = weakref.ref(node)
        schedule = FreezeSchedule(thaw_every=2)
        schedule.run()
        assert gc.get_freeze_count() > 0
        del node
        gc.collect()
        assert alive() is not None, "frozen objects are skipped by collections"
        schedule.run()
        assert alive() is None
    finally:
        gc.unfreeze()


class RecoveringApp:
    """What `freeze_after_recovery` and `is_recovering` read of a Faust app."""

    def __init__(self) -> None:
        self.in_recovery = True
        self.tables = SimpleNamespace(recovery=SimpleNamespace(completed=asyncio.Event()))


async def test_the_survivors_are_frozen_once_when_recovery_ends_and_health_says_so() -> None:
    app = RecoveringApp()
    check = freeze_after_recovery(cast(faust.App, app))
    try:
        gc.unfreeze()
        await check()
        assert is_recovering(cast(faust.App, app)) and gc.get_freeze_count() == 0
        app.in_recovery = False
        assert is_recovering(cast(faust.App, app)), "never recovered yet: still recovering"
        app.tables.recovery.completed.set()
        assert not is_recovering(cast(faust.App, app))
        await check()
        frozen = gc.get_freeze_count()
        assert frozen > 0, "frozen as recovery ended"
        gc.unfreeze()
        await check()
        assert gc.get_freeze_count() == 0, "once per recovery, not every check"
        app.in_recovery = True
        await check()
        app.in_recovery = False
        await check()
        assert gc.get_freeze_count() > 0, "and again after the next recovery (a rebalance)"
    finally:
        gc.unfreeze()
