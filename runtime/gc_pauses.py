"""Garbage-collector pauses: measured on every process's `/metrics`, and kept short in the workers.

A full collection walks every tracked object. A streams worker holds its tables in memory
(hundreds of thousands of dicts after a while), and a full collection over them stopped its event
loop for about 100 ms, which showed as the tail of message latency. `freeze_survivors` moves
what survived into the permanent generation, which collections skip; reference counting still
frees those objects when they are dropped (table values hold no cycles), so only cyclic garbage
that outlived a collection would stay: each round collects before it freezes, and every
`THAW_EVERY`-th round thaws everything first.
"""

from __future__ import annotations

import gc
import time

from prometheus_client import Histogram

GC_PAUSES = Histogram(
    "python_gc_pause_seconds",
    "Pauses of the garbage collector",
    ["generation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
FREEZE_INTERVAL_S = 60.0
THAW_EVERY = 30
"""Every 30th round (30 minutes) thaws first: one full collection of everything, as without the
freezing, but twice an hour instead of every few seconds under load."""


class _PauseTimer:
    """The `gc.callbacks` entry: times each collection from its start to its stop."""

    def __init__(self) -> None:
        self.started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
        else:
            GC_PAUSES.labels(str(info["generation"])).observe(time.perf_counter() - self.started)


_on_gc = _PauseTimer()


def measure_gc_pauses() -> None:
    """Install the callback once per process."""
    if _on_gc not in gc.callbacks:
        gc.callbacks.append(_on_gc)


def freeze_survivors(thaw_first: bool = False) -> None:
    """Collect what is unreachable now, then exempt every survivor from later collections: the
    pause of this call grows with what was allocated since the last one, not with the tables.
    With `thaw_first`, frozen objects are collected too (one long pause): something frozen while
    alive that later became cyclic garbage is freed then instead of never."""
    if thaw_first:
        gc.unfreeze()
    gc.collect()
    gc.freeze()


class FreezeSchedule:
    """Freeze every round, and thaw everything before each `THAW_EVERY`-th: the rare long pause
    bounds what cyclic garbage frozen objects can hold on to."""

    def __init__(self, thaw_every: int = THAW_EVERY) -> None:
        self.thaw_every = thaw_every
        self.rounds = 0

    def run(self) -> None:
        self.rounds += 1
        freeze_survivors(thaw_first=self.rounds % self.thaw_every == 0)
