"""Blue/green rebuild of read models, beside the live projections worker.

For each projection chosen, under its own advisory lock (`projections/locks.py`):
1. drop what a dead rebuild left (`rebuild_<name>`) and what the last swap retired (`retired_<name>`),
   and create the shadow schema from the projection's declared DDL (`projections/shadow.py`);
2. **bulk**: load the shadow from every partition's log, start to current end, with the bulk
   loader (`projections/bulk_load.py`: fold + COPY into tables without constraints or indexes);
   then **indexes**: the constraints and indexes the projection declares, and `ANALYZE`;
3. **catch_up**: follow the topic and apply to the shadow until it is a few records from the
   live model's offsets (with the statement path, no NOTIFY);
4. **checksum** (when the live model is the same version): pause the live worker a moment, bring
   the shadow to exactly the live offsets, open a REPEATABLE READ snapshot, let the worker go, and
   checksum both sides in that snapshot; a mismatch stops here, the live model untouched;
5. **swap**: catch up again, pause, apply the last tail, move the tables (`projections/swap.py`).

Readers always read a whole model: the old until the swap's commit, the new after it. The only
writes to the live model are the swap (one transaction) and, when the live model lags behind the
shadow at the checksum (no worker running), the records in between applied to it exactly as a
worker would (same statement, offsets and NOTIFY). A rebuild killed at any point leaves the live
model as it was; the next one drops its shadow.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field

import asyncpg

from config.kafka import client_options
from config.settings import CommonSettings
from projections.apply import ENSURE_OFFSETS, LOCK_OFFSETS, advance_offsets, apply_records
from projections.bulk_load import bulk_load
from projections.checksum import Checksum, checksums_in
from projections.follower import Follower
from projections.key_mirror import catching_up
from projections.locks import try_rebuild
from projections.model import Projection, Record
from projections.rebuild_progress import ProgressRecorder
from projections.sealed_texts import OPENER
from projections.shadow import (
    LIVE_SCHEMA,
    after_load_statements,
    connect_shadow,
    create_shadow,
    drop_leftovers,
    finish_tables,
    offsets,
    retired_schema,
    shadow_schema,
)
from projections.swap import (
    LOCK_LIVE_OFFSETS,
    READ_LIVE_OFFSETS,
    OffsetsMoved,
    Pauses,
    ensure_offsets,
    paused,
    swap_tables,
)
from projections.topic_reader import Span, TopicReader
from projections.versions import stored_version
from schemas.topics import CONTENT_KEYS

log = logging.getLogger(__name__)

BATCH_SIZE = 2000
CLOSE_ENOUGH = 500
"""A catch-up round that had at most this many records to apply is the last before a pause."""
CATCH_UP_ROUNDS = 50
SWAP_ATTEMPTS = 20
SWAP_RETRY_PAUSE_S = 0.2
LIVE_WAIT_S = 3.0
"""How long the checksum waits for the live worker to pass the shadow before it applies the records
in between to the live model itself (no worker running)."""
LIVE_POLL_S = 0.1


class RebuildRefused(Exception):
    """Another rebuild of the projection holds its lock."""


class RebuildFailed(Exception):
    """The rebuild stopped before its swap: the live model is untouched."""

    def __init__(self, message: str, outcome: Rebuilt) -> None:
        super().__init__(message)
        self.outcome = outcome


class ChecksumMismatch(RebuildFailed):
    pass


class SwapFailed(RebuildFailed):
    pass


@dataclass
class Rebuilt:
    """What the rebuild of one projection did, for the command's report."""

    projection: str
    version: int
    live_version: int | None
    records: int = 0
    offsets: dict[int, int] = field(default_factory=dict)
    """Where shadow and live were when compared."""
    shadow_sums: list[Checksum] = field(default_factory=list)
    live_sums: list[Checksum] = field(default_factory=list)
    pauses: Pauses = field(default_factory=Pauses)
    swap_attempts: int = 0
    swapped: bool = False
    note: str = ""
    """Why nothing was rebuilt, or why no checksum was compared."""

    @property
    def compares(self) -> bool:
        return self.live_version is None or self.live_version == self.version

    def lines(self) -> list[str]:
        name = self.projection
        if not self.swapped and self.note:
            return [f"{name}: {self.note}"]
        lines = [f"{name}: version {self.version}, {self.records} records"]
        if self.shadow_sums:
            at = " ".join(f"{p}:{o}" for p, o in sorted(self.offsets.items()))
            equal = self.shadow_sums == self.live_sums
            lines.append(f"{name}: checksums at offsets {at}: {'shadow = live' if equal else 'MISMATCH'}")
            for shadow, live in zip(self.shadow_sums, self.live_sums, strict=True):
                if shadow == live:
                    lines.append(f"  {shadow.line()}")
                else:
                    lines.append(f"  {shadow.line()}  shadow")
                    lines.append(f"  {live.line()}  live")
        if self.note:
            lines.append(f"{name}: {self.note}")
        if self.swapped:
            lines.append(
                f"{name}: swapped in (attempt {self.swap_attempts}); the live worker waited at most "
                f"{self.pauses.longest():.1f} ms at a time ({len(self.pauses.ms)} pauses)"
            )
        return lines


class Build:
    """The rebuild of one projection, its lock held by the caller."""

    def __init__(
        self,
        settings: CommonSettings,
        reader: TopicReader,
        projection: Projection,
        recorder: ProgressRecorder,
        outcome: Rebuilt,
        repair: bool = False,
    ) -> None:
        self.settings = settings
        self.repair = repair
        """Swap in even when the checksums differ (the live model is known to be wrong)."""
        self.url = settings.database_url
        self.reader = reader
        self.projection = projection
        self.topic = settings.topic(projection.topic.name)
        self.recorder = recorder
        self.outcome = outcome
        self.live: asyncpg.Connection | None = None
        self.shadow: asyncpg.Connection | None = None
        self.partitions: list[int] = []

    async def close(self) -> None:
        for conn in (self.live, self.shadow):
            if conn is not None:
                await conn.close()

    def conns(self) -> tuple[asyncpg.Connection, asyncpg.Connection]:
        assert self.live is not None and self.shadow is not None, "opened by run"
        return self.live, self.shadow

    async def run(self) -> None:
        p = self.projection
        self.live = await asyncpg.connect(self.url)
        await drop_leftovers(self.live, p)
        await create_shadow(self.live, p)
        self.shadow = await connect_shadow(self.url, p)
        spans = await self.reader.spans(self.topic)
        self.partitions = sorted(spans)
        await ensure_offsets(self.live, p, self.topic, self.partitions)
        self.outcome.records = await self.load(spans)
        await ensure_offsets(self.shadow, p, self.topic, self.partitions)  # after: the bulk loader writes its own
        await self.warm_up()
        follower = Follower(client_options(self.settings), self.topic, await self.shadow_offsets())
        await follower.start()
        try:
            self.recorder.phase("catch_up", 0)
            await self.catch_up(follower)
            if self.outcome.compares:
                await self.compare(follower)
            else:
                self.outcome.note = (
                    f"checksums not compared: the live read model is version {self.outcome.live_version}, "
                    f"the new one version {p.version} (a different model by design)"
                )
            await self.swap(follower)
        finally:
            await follower.close()
        await self.live.execute(f"DROP SCHEMA IF EXISTS {shadow_schema(p)} CASCADE")

    async def warm_up(self) -> None:
        """Prepare now what the pauses run, so that no statement is parsed, and no type looked up
        (asyncpg asks the server about array types once per connection), while the worker waits."""
        live, shadow = self.conns()
        p = self.projection
        await shadow.prepare(p.statement)
        for conn in (live, shadow):
            await conn.prepare(LOCK_OFFSETS)
            await conn.prepare(ENSURE_OFFSETS)
            async with conn.transaction():
                await advance_offsets(conn, p.name, self.topic, {}, notify=conn is live)
        await live.prepare(LOCK_LIVE_OFFSETS)
        await live.prepare(READ_LIVE_OFFSETS)

    async def load(self, spans: dict[int, Span]) -> int:
        _, shadow = self.conns()
        p = self.projection
        self.recorder.phase("bulk", sum(s.size for s in spans.values()))
        count = await bulk_load(self.url, self.reader, p, self.topic, shadow_schema(p), spans, self.recorder.advance)
        self.recorder.phase("indexes", len(after_load_statements(p)))
        await finish_tables(shadow, p, self.recorder.advance)
        await shadow.execute(f"ANALYZE {', '.join(p.table_names)}")
        return count

    async def live_offsets(self) -> dict[int, int]:
        live, _ = self.conns()
        return await offsets(live, LIVE_SCHEMA, self.projection, self.topic)

    async def shadow_offsets(self) -> dict[int, int]:
        live, _ = self.conns()
        return await offsets(live, shadow_schema(self.projection), self.projection, self.topic)

    async def targets(self) -> dict[int, int]:
        """Where the shadow should go next: the live offsets when comparing (the live model brought
        up to the shadow first if it lags behind it), else the end of the log."""
        live, shadow = await self.live_offsets(), await self.shadow_offsets()
        if self.outcome.compares:
            if any(shadow.get(p, 0) > live.get(p, 0) for p in self.partitions):
                live = await self.bring_live_to(shadow)
            ends: dict[int, int] = {}
        else:
            ends = await self.reader.end_offsets(self.topic, self.partitions)
        return {p: max(live.get(p, 0), shadow.get(p, 0), ends.get(p, 0)) for p in self.partitions}

    async def bring_live_to(self, shadow: dict[int, int]) -> dict[int, int]:
        """Wait a little for the live worker to pass the shadow; if it does not (none runs), apply the
        records in between to the live model as a worker would."""
        deadline = time.monotonic() + LIVE_WAIT_S
        live = await self.live_offsets()
        while any(shadow.get(p, 0) > live.get(p, 0) for p in self.partitions) and time.monotonic() < deadline:
            await asyncio.sleep(LIVE_POLL_S)
            live = await self.live_offsets()
        spans = {p: Span(live.get(p, 0), shadow[p]) for p in self.partitions if shadow.get(p, 0) > live.get(p, 0)}
        if spans:
            log.warning("%s: the live model lags behind the shadow, applying %s to it", self.projection.name, spans)
            conn, _ = self.conns()
            version = self.projection.version
            async with aclosing(self.reader.read(self.topic, spans, BATCH_SIZE)) as batches:
                async for batch in batches:
                    await apply_records(conn, self.projection, self.topic, batch, version=version)
            live = await self.live_offsets()
        return live

    async def advance_shadow(self, follower: Follower, targets: dict[int, int]) -> None:
        """Apply the records up to `targets` to the shadow, and set its offsets there."""
        _, shadow = self.conns()
        records = await follower.until(targets)
        for start in range(0, len(records), BATCH_SIZE):
            batch: Sequence[Record] = records[start : start + BATCH_SIZE]
            await apply_records(shadow, self.projection, self.topic, batch, notify=False)
        async with shadow.transaction():
            await advance_offsets(shadow, self.projection.name, self.topic, targets, notify=False)
        self.outcome.records += len(records)
        if self.recorder.phase_name == "catch_up":
            self.recorder.advance(len(records))

    async def catch_up(self, follower: Follower) -> None:
        """Apply to the shadow what it lacks, again while that was more than `CLOSE_ENOUGH` records;
        then take in what the broker has at hand (the next pause's tail, mostly)."""
        for _ in range(CATCH_UP_ROUNDS):
            targets, shadow = await self.targets(), await self.shadow_offsets()
            behind = sum(max(0, o - shadow.get(p, 0)) for p, o in targets.items())
            if behind:
                self.recorder.total = self.recorder.done + behind
                await self.advance_shadow(follower, targets)
            await follower.prefetch()
            if behind <= CLOSE_ENOUGH:
                return

    async def while_paused(self, follower: Follower, what: str, work: Callable[[], Awaitable[None]]) -> int:
        """`work` (which pauses the live worker), after a catch-up, tried again while a lock is not had in
        time; the attempt that did it."""
        for attempt in range(1, SWAP_ATTEMPTS + 1):
            await self.catch_up(follower)
            try:
                await work()
            except (asyncpg.LockNotAvailableError, OffsetsMoved) as error:
                log.warning(
                    "%s: %s, attempt %d: a lock not had in time (%s)", self.projection.name, what, attempt, error
                )
                await asyncio.sleep(SWAP_RETRY_PAUSE_S * attempt)
                continue
            return attempt
        raise SwapFailed(
            f"{self.projection.name}: no {what} after {SWAP_ATTEMPTS} attempts (readers or the worker kept the "
            "locks); the live model is untouched",
            self.outcome,
        )

    async def compare(self, follower: Follower) -> None:
        """Checksum shadow and live at the same offsets: both read in one snapshot, taken while the live
        worker waits and the shadow is at exactly its offsets, then each side on its own connection
        (the second imports the snapshot), so both cores work and the worker waits only for the snapshot."""
        live, _ = self.conns()
        p = self.projection
        self.recorder.phase("checksum", 2 * len(p.tables))
        exporter, importer = await asyncpg.connect(self.url), await asyncpg.connect(self.url)
        exported = exporter.transaction(isolation="repeatable_read", readonly=True)
        imported = importer.transaction(isolation="repeatable_read", readonly=True)
        snapshot_ids: list[str] = []

        async def take_snapshot() -> None:
            async with paused(live, p, self.topic, self.outcome.pauses) as live_offsets:
                await self.advance_shadow(follower, live_offsets)
                await exported.start()
                snapshot_ids.append(await exporter.fetchval("SELECT pg_export_snapshot()"))

        try:
            await self.while_paused(follower, "checksum snapshot", take_snapshot)
            await imported.start()
            await importer.execute(f"SET TRANSACTION SNAPSHOT '{snapshot_ids[-1]}'")
            seen = await offsets(importer, LIVE_SCHEMA, p, self.topic)
            shadow_seen = await offsets(importer, shadow_schema(p), p, self.topic)
            if seen != shadow_seen:
                raise RebuildFailed(f"shadow at {shadow_seen}, live at {seen}: not comparable", self.outcome)
            self.outcome.offsets = seen
            shadow_sums, live_sums = await asyncio.gather(
                self.side(exporter, shadow_schema(p)), self.side(importer, LIVE_SCHEMA)
            )
            self.outcome.shadow_sums, self.outcome.live_sums = shadow_sums, live_sums
        finally:
            for conn in (exporter, importer):
                await conn.close()  # ends its transaction
        if self.outcome.shadow_sums != self.outcome.live_sums and self.repair:
            self.outcome.note = "the checksums differ: swapped in all the same (--repair)"
        elif self.outcome.shadow_sums != self.outcome.live_sums:
            raise ChecksumMismatch(
                f"{p.name}: the shadow's checksums differ from the live model's at the same offsets; "
                f"the live model is untouched, the shadow is kept in schema {shadow_schema(p)}",
                self.outcome,
            )

    async def side(self, conn: asyncpg.Connection, schema: str) -> list[Checksum]:
        sums = []
        for table in self.projection.tables:
            sums.extend(await checksums_in(conn, [table], schema))
            self.recorder.advance(1)
        return sums

    async def swap(self, follower: Follower) -> None:
        live, _ = self.conns()
        p = self.projection
        self.recorder.phase("swap", 1)
        await live.execute(f"CREATE SCHEMA IF NOT EXISTS {retired_schema(p)}")

        async def swap_once() -> None:
            async with paused(live, p, self.topic, self.outcome.pauses) as live_offsets:
                shadow = await self.shadow_offsets()
                targets = {q: max(live_offsets.get(q, 0), shadow.get(q, 0)) for q in self.partitions}
                await self.advance_shadow(follower, targets)
                await swap_tables(live, p, self.topic, live_offsets, targets)

        self.outcome.swap_attempts = await self.while_paused(follower, "swap", swap_once)
        self.outcome.swapped = True
        self.recorder.advance(1)


async def reset(conn: asyncpg.Connection, projection: Projection) -> None:
    """Empty a projection's live tables and offsets (tests start from it; no rebuild does)."""
    async with conn.transaction():
        await conn.execute(f"TRUNCATE {', '.join(projection.table_names)}")
        await conn.execute("DELETE FROM projection_offsets WHERE projection = $1", projection.name)


async def rebuild_one(
    settings: CommonSettings, reader: TopicReader, projection: Projection, progress: bool, upgrade: bool, repair: bool
) -> Rebuilt:
    lock = await asyncpg.connect(settings.database_url)
    try:
        if not await try_rebuild(lock, projection.name):
            raise RebuildRefused(f"rebuild refused: a rebuild of the {projection.name} projection is running")
        live_version = await stored_version(lock, projection.name)
        outcome = Rebuilt(projection.name, projection.version, live_version)
        if upgrade and (live_version is None or live_version >= projection.version):
            outcome.note = f"version {live_version} is live, this code writes {projection.version}: nothing to do"
            return outcome
        recorder = ProgressRecorder(settings.database_url, projection.name, progress)
        await recorder.start()
        build = Build(settings, reader, projection, recorder, outcome, repair)
        try:
            await build.run()
            await recorder.end("done")
        except Exception as error:
            await recorder.end("failed", str(error) or type(error).__name__)
            raise
        finally:
            await build.close()
            await recorder.close()
        return outcome
    finally:
        await lock.close()


async def rebuild(
    settings: CommonSettings,
    projections: list[Projection],
    progress: bool = True,
    upgrade: bool = False,
    report: Callable[[Rebuilt], None] | None = None,
    repair: bool = False,
) -> dict[str, Rebuilt]:
    """Rebuild `projections` one after the other, beside the live worker; what each did.

    With `upgrade`, only those whose live read model is an older version than the code's; with
    `repair`, swapped in even when the checksums differ.
    `RebuildRefused` when another rebuild of one holds its lock; `RebuildFailed` (with what was
    done) when one stops before its swap (the live model untouched; those before it swapped).
    """
    done: dict[str, Rebuilt] = {}
    async with TopicReader(settings) as reader, keys_caught_up_by(reader, settings):
        for projection in projections:
            done[projection.name] = await rebuild_one(settings, reader, projection, progress, upgrade, repair)
            if report is not None:
                report(done[projection.name])
    return done


@asynccontextmanager
async def keys_caught_up_by(reader: TopicReader, settings: CommonSettings) -> AsyncIterator[None]:
    """Sealed texts are opened with the key mirror, caught up from `content.keys` with `reader`
    (unless this process's worker does it already), until the end of the block."""
    before = OPENER.catch_up
    if before is None:

        async def the_reader() -> TopicReader:
            return reader

        OPENER.follow(catching_up(the_reader, settings.topic(CONTENT_KEYS.name), settings.database_url))
    try:
        yield
    finally:
        OPENER.follow(before)
