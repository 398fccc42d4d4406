"""The version of each projection's live read model (`projection_versions`), and the wait of a
worker whose code writes another one.

A worker applies a projection only while the stored version is the one its code declares
(`Projection.version`). When they differ at its start, or a swap changes the stored one under it
(`apply_records` reads it after locking the offsets, and refuses the batch), its agent for that
projection writes nothing (the old read model stays readable as it was) and lets its batches go:
the rebuild reads the same records from the topic, and its swap moves the live offsets past them
(whatever it did not cover, the worker finds as a hole behind its committed offsets and fills once
the version is its own, `projections.runtime`). Not holding the batches keeps a rebalance from
waiting for the build (Faust waits for unacked records before it hands partitions over). The gate
below meanwhile:
- stored older than declared: builds the new version with `python -m projections rebuild --only
  NAME --upgrade --no-progress`, a child process (the same code path as an operator's rebuild, on
  a core of its own, and the worker's event loop stays free), which swaps it in once caught up;
- stored newer than declared: never goes back; waits (logging why) until someone swaps in the
  version this code writes, or the worker is replaced by a newer one;
- no row: the projection's tables came with its migration; the declared version is recorded.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Iterable

import asyncpg

from projections.model import Projection

log = logging.getLogger(__name__)

STORED = "SELECT version FROM projection_versions WHERE projection = $1"
RECORD_IF_MISSING = "INSERT INTO projection_versions (projection, version) VALUES ($1, $2) ON CONFLICT DO NOTHING"
SET = """
INSERT INTO projection_versions (projection, version) VALUES ($1, $2)
ON CONFLICT (projection) DO UPDATE SET version = excluded.version, updated_at = now()
"""

FIRST_LOOK_S = 5.0
"""How long a batch waits for the worker's first look at its projection's stored version."""
POLL_S = 2.0
"""How often a worker waiting for another's build (or for a newer model to go) looks again."""
FAILED_BUILD_PAUSE_S = 30.0
EXIT_REFUSED = 1
"""The rebuild's exit code when another rebuild of the projection holds its lock."""


async def stored_version(conn: asyncpg.Connection, projection: str) -> int | None:
    version: int | None = await conn.fetchval(STORED, projection)
    return version


async def set_version(conn: asyncpg.Connection, projection: str, version: int) -> None:
    await conn.execute(SET, projection, version)


def upgrade_command(projection: str) -> list[str]:
    return [sys.executable, "-m", "projections", "rebuild", "--only", projection, "--upgrade", "--no-progress"]


class VersionGate:
    """Per projection, open while the live read model is the version this code writes."""

    def __init__(self, database_url: str, projections: Iterable[Projection]) -> None:
        self.database_url = database_url
        self.projections = {p.name: p for p in projections}
        self._known = {name: asyncio.Event() for name in self.projections}
        """Set once the stored version was read."""
        self._open = dict.fromkeys(self.projections, False)
        self._settling: dict[str, asyncio.Task[None]] = {}
        self._children: set[asyncio.subprocess.Process] = set()

    def is_open(self, projection: Projection) -> bool:
        """Known to be this code's version."""
        return self._known[projection.name].is_set() and self._open[projection.name]

    def is_closed(self, projection: Projection) -> bool:
        """Known to be another version than this code's."""
        return self._known[projection.name].is_set() and not self._open[projection.name]

    def start(self) -> None:
        """Look at every projection's stored version now, building those that need it."""
        for name in self.projections:
            self._settle_soon(name)

    async def open(self, projection: Projection) -> bool:
        """Whether this code may write the projection's live read model (waiting a little for the first
        look). True when it cannot tell: each batch checks the version in its own transaction anyway
        (`apply_records`), and a database that cannot be read fails the batch, so the worker exits
        75 as it always did rather than wait here for ever."""
        known = self._known[projection.name]
        if not known.is_set():
            self._settle_soon(projection.name)
            try:
                await asyncio.wait_for(known.wait(), FIRST_LOOK_S)
            except TimeoutError:
                return True
        return self._open[projection.name]

    def shut(self, projection: Projection) -> None:
        """The stored version changed under this worker (a swap): closed until it is ours again."""
        self._open[projection.name] = False
        self._known[projection.name].set()
        self._settle_soon(projection.name)

    async def close(self) -> None:
        for task in self._settling.values():
            task.cancel()
        await asyncio.gather(*self._settling.values(), return_exceptions=True)
        for child in self._children:
            if child.returncode is None:
                child.terminate()  # a rebuild that dies leaves the live model as it was

    def _settle_soon(self, name: str) -> None:
        task = self._settling.get(name)
        if task is None or task.done():
            self._settling[name] = asyncio.create_task(self._settle(self.projections[name]), name=f"version {name}")

    async def _settle(self, projection: Projection) -> None:
        warned = False
        while True:
            try:
                stored = await self._stored(projection)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                log.warning("%s projection: cannot read its stored version yet: %r", projection.name, error)
                await asyncio.sleep(POLL_S)
                continue
            self._open[projection.name] = stored == projection.version
            self._known[projection.name].set()
            if stored == projection.version:
                log.info("%s projection: the live read model is version %d, applying it", projection.name, stored)
                return
            if stored > projection.version:
                if not warned:
                    log.error(
                        "%s projection: the live read model is version %d, newer than this worker's %d: "
                        "not applying it (stop this worker, or swap in version %d)",
                        projection.name,
                        stored,
                        projection.version,
                        projection.version,
                    )
                warned = True
                await asyncio.sleep(POLL_S)
                continue
            await self._build(projection, stored)

    async def _stored(self, projection: Projection) -> int:
        conn = await asyncpg.connect(self.database_url)
        try:
            await conn.execute(RECORD_IF_MISSING, projection.name, projection.version)
            stored = await stored_version(conn, projection.name)
        finally:
            await conn.close()
        assert stored is not None, "recorded just before"
        return stored

    async def _build(self, projection: Projection, stored: int) -> None:
        log.warning(
            "%s projection: the live read model is version %d, this worker writes %d: building version %d "
            "in a shadow schema; the old model stays readable (and still) until the swap",
            projection.name,
            stored,
            projection.version,
            projection.version,
        )
        child = await asyncio.create_subprocess_exec(*upgrade_command(projection.name))
        self._children.add(child)
        try:
            code = await child.wait()
        finally:
            self._children.discard(child)
        if code == EXIT_REFUSED:
            await asyncio.sleep(POLL_S)  # another worker (or an operator) is building it
        elif code != 0:
            log.error(
                "%s projection: building version %d failed (exit %d): trying again in %.0f s",
                projection.name,
                projection.version,
                code,
                FAILED_BUILD_PAUSE_S,
            )
            await asyncio.sleep(FAILED_BUILD_PAUSE_S)
