"""A rebuild's progress: a tqdm bar on the terminal and the same numbers in `rebuild_progress`
(`schemas.progress.RebuildProgress`), written about once a second, for the operator console.

`read_rebuild_progress` is what the console calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import NoReturn

import asyncpg
from tqdm import tqdm

from schemas.progress import REBUILD_PROGRESS_SQL, RebuildPhase, RebuildProgress

log = logging.getLogger(__name__)

WRITE_INTERVAL_S = 1.0

UPSERT = """
INSERT INTO rebuild_progress AS r (projection, phase, done, total, events_per_s, eta_s, started_at, updated_at, error)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (projection) DO UPDATE
SET phase = excluded.phase, done = excluded.done, total = excluded.total, events_per_s = excluded.events_per_s,
    eta_s = excluded.eta_s, started_at = excluded.started_at, updated_at = excluded.updated_at, error = excluded.error
"""

UNITS: dict[RebuildPhase, str] = {
    "bulk": " events",
    "indexes": " indexes",
    "catch_up": " events",
    "checksum": " tables",
    "swap": " swaps",
}


async def read_rebuild_progress(conn: asyncpg.Connection) -> list[RebuildProgress]:
    """The last rebuild of every projection rebuilt so far, oldest start first; a rebuild whose
    process died in a running phase reads as failed."""
    return [RebuildProgress.model_validate(dict(row)) for row in await conn.fetch(REBUILD_PROGRESS_SQL)]


def rate_and_eta(done: int, total: int, seconds: float) -> tuple[float, float | None]:
    """Units per second so far, and the seconds left at that rate (None before the first unit)."""
    rate = done / seconds if seconds > 0 else 0.0
    eta = max(0, total - done) / rate if rate > 0 else None
    return rate, eta


EVENT_PHASES = ("bulk", "catch_up")
"""The phases whose units are records of the topic; a finished rebuild shows their sum and rate."""


class ProgressRecorder:
    """One projection's rebuild: `phase` starts a phase (and its bar), `advance` counts units done.

    `advance` is cheap and synchronous (the bulk loader calls it per batch); a task writes the row
    when something changed, at most once per `WRITE_INTERVAL_S`, and at once on a phase change.
    """

    def __init__(self, database_url: str, projection: str, bar: bool) -> None:
        self.database_url = database_url
        self.projection = projection
        self.show_bar = bar
        self.started_at = datetime.now(UTC)
        self.phase_name: RebuildPhase = "bulk"
        self.done = 0
        self.total = 0
        self.events = 0
        """Records replayed so far, over the phases that read the topic (bulk, catch_up)."""
        self.error = ""
        self._started = time.monotonic()
        self._phase_started = self._started
        self._bar: tqdm[NoReturn] | None = None
        self._conn: asyncpg.Connection | None = None
        self._dirty = asyncio.Event()
        self._stopping = False
        self._writer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._conn = await asyncpg.connect(self.database_url)
        self._writer = asyncio.create_task(self._write_loop(), name=f"rebuild progress of {self.projection}")

    def phase(self, name: RebuildPhase, total: int) -> None:
        self._close_bar()
        self.phase_name, self.done, self.total = name, 0, total
        self._phase_started = time.monotonic()
        if self.show_bar and name in UNITS:
            self._bar = tqdm(total=total, desc=f"{self.projection} {name}", unit=UNITS[name], leave=True)
        self._dirty.set()

    def advance(self, n: int) -> None:
        self.done += n
        if self.phase_name in EVENT_PHASES:
            self.events += n
        if self._bar is not None:
            self._bar.update(n)

    def snapshot(self) -> RebuildProgress:
        if self.phase_name == "done":
            rate, eta = rate_and_eta(self.events, self.events, time.monotonic() - self._started)
        else:
            rate, eta = rate_and_eta(self.done, self.total, time.monotonic() - self._phase_started)
        counts_events = self.phase_name in (*EVENT_PHASES, "done")
        return RebuildProgress(
            projection=self.projection,
            phase=self.phase_name,
            done=self.done,
            total=self.total,
            events_per_s=round(rate, 1) if counts_events else 0.0,
            eta_s=round(eta, 1) if eta is not None else None,
            started_at=self.started_at,
            updated_at=datetime.now(UTC),
            error=self.error,
        )

    async def end(self, phase: RebuildPhase, error: str = "") -> None:
        """Write the last row (done or failed) and stop writing."""
        self._close_bar()
        self.phase_name, self.error = phase, error
        if phase == "done":
            self.done = self.total = self.events
        await self._stop_writer()
        await self._write()

    async def close(self) -> None:
        self._close_bar()
        await self._stop_writer()
        if self._conn is not None:
            await self._conn.close()

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    async def _stop_writer(self) -> None:
        """Let the writer finish the write in hand (a cancelled query would leave the connection busy)."""
        if self._writer is not None:
            self._stopping = True
            self._dirty.set()
            await asyncio.gather(self._writer, return_exceptions=True)
            self._writer = None

    async def _write_loop(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), WRITE_INTERVAL_S)
            if self._stopping:
                return
            self._dirty.clear()
            try:
                await self._write()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                log.warning("cannot record the rebuild's progress: %r", error)

    async def _write(self) -> None:
        if self._conn is None:
            return
        p = self.snapshot()
        await self._conn.execute(
            UPSERT,
            p.projection,
            p.phase,
            p.done,
            p.total,
            p.events_per_s,
            p.eta_s,
            p.started_at,
            p.updated_at,
            p.error,
        )
