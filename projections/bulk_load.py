"""Bulk load of a rebuild: a projection's records folded into their final rows in memory, then COPYed.

Applying the statement once per event costs PostgreSQL a statement per event; a rebuild instead
reads the records of the spans, turns each into the statement's parameters (as the worker does:
`projections.decoding.params_of`, the same records skipped for the same reasons), folds them into
the rows the statement would leave (`projections.folds`), and writes each table with one COPY,
then the schema's `projection_offsets` at the end of each span. The tables must be empty, with
their primary keys; unique constraints and indexes may come after (the fold keeps them itself).

The messages projection, most of the log, is folded in several processes at once when the load
is big enough: each takes whole partitions, folds them and COPYs its rows in a transaction of its
own. A chat's events are all in its partition (they are keyed by chat id), so the folds need
nothing of each other; that is checked afterwards (no chat in two folds, no edit of a message a
fold does not hold, no key written twice), and a load that fails the check is truncated and done
again in one process, where every record meets every other. The offsets are written last, once
every row is in: a load that dies leaves no offsets, and its schema is dropped, never caught up.

A projection whose statement no fold models (a changed one) is loaded by executing its statement
per event, in one transaction, on a connection whose search path is the schema alone.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import os
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import aclosing, contextmanager
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import asyncpg
import uvloop
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from projections.apply import Conn, Skipped, decode_all, report, to_params
from projections.decoding import fast_params
from projections.folds import Fold, MessagesFold, TableRows, fold_for
from projections.model import Params, Projection, Record
from projections.sealed_texts import OPENER
from projections.topic_reader import FETCH_TIMEOUT_MS, STALL_SECONDS, Span, TopicReader

log = logging.getLogger(__name__)

BATCH_SIZE = 5000
FETCH_OPTIONS: dict[str, Any] = {
    "max_partition_fetch_bytes": 16 * 1024 * 1024,
    "fetch_max_bytes": 64 * 1024 * 1024,
    "fetch_max_wait_ms": 100,
}
"""Bigger fetches than a worker's: fewer round trips for a log read from its start."""

Chunk = tuple[int, list[ConsumerRecord[bytes, bytes]]]
"""Records of one partition (its number first), in log order."""

PARALLEL_MIN_RECORDS = 200_000
"""Below this, starting processes costs more than it saves."""
WARM_MIN_RECORDS = 5_000
"""A load this big starts the share processes ahead (the messages may follow: see `Workers`)."""
PARALLEL_FOLDS = frozenset({"messages"})
"""The folds whose partitions may be folded apart (users: a username is unique across partitions)."""
PROGRESS_EVERY_S = 0.25

WRITE_OFFSETS = """
INSERT INTO {schema}.projection_offsets (projection, topic, partition, next_offset)
SELECT $1, $2, p, o FROM unnest($3::int[], $4::bigint[]) AS t (p, o)
"""


def quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


Progress = Callable[[int], object]
"""Called with the number of records done since its last call."""


async def bulk_load(
    database_url: str,
    reader: TopicReader,
    projection: Projection,
    topic: str,
    schema: str,
    spans: dict[int, Span],
    on_progress: Progress,
    *,
    processes: int | None = None,
) -> int:
    """Load the rows the records of `spans` give into the empty tables of `schema`, and its
    `projection_offsets` (next_offset = each span's end); the number of records read.

    `processes`: how many processes fold the messages (default: one per core once the load is
    big enough; 1 folds in this process). The other projections are folded in this process.
    """
    if projection.sealed_params and OPENER.catch_up is not None:
        await OPENER.catch_up()
    if fold_for(projection) is None:
        log.warning("%s: no fold models its statement; loading by the statement", projection.name)
        read = await load_by_statement(database_url, reader, projection, topic, schema, spans, on_progress)
    else:
        if processes is None and (os.cpu_count() or 1) > 1 and sum(s.size for s in spans.values()) >= WARM_MIN_RECORDS:
            WORKERS.warm(os.cpu_count() or 1)
        count = default_processes(projection, spans) if processes is None else processes
        if projection.name not in PARALLEL_FOLDS:
            count = 1
        read = await load_folded(database_url, reader.options, projection, topic, schema, spans, on_progress, count)
    conn = await asyncpg.connect(database_url)
    try:
        await write_offsets(conn, projection, topic, schema, spans)
    finally:
        await conn.close()
    return read


async def load_folded(
    database_url: str,
    options: dict[str, Any],
    projection: Projection,
    topic: str,
    schema: str,
    spans: dict[int, Span],
    on_progress: Progress,
    processes: int,
) -> int:
    """Fold and COPY with the primary keys off, then put them back (building an index once is
    cheaper than keeping it through a COPY, and a key two shares both wrote shows there)."""
    conn = await asyncpg.connect(database_url)
    try:
        keys = await primary_keys(conn, schema, projection)
        await drop_keys(conn, schema, keys)
        counted = Counted(on_progress)
        read = None
        if processes > 1:
            read = await load_in_processes(database_url, options, projection, topic, schema, spans, processes, counted)
            if read is not None and not await keys_restored(conn, schema, keys):
                read = None
            if read is None:
                await truncate(conn, projection, schema)
        if read is None:
            again = Counted(on_progress, counted.done)
            read = await load_in_process(conn, options, projection, topic, schema, spans, again)
            await restore_keys(conn, schema, keys)
    finally:
        await conn.close()
    return read


PRIMARY_KEYS = """
SELECT c.relname AS table, k.conname AS name, pg_get_constraintdef(k.oid) AS definition
FROM pg_constraint AS k
JOIN pg_class AS c ON c.oid = k.conrelid
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = ANY($2::text[]) AND k.contype = 'p'
  AND NOT EXISTS (SELECT FROM pg_constraint AS f WHERE f.contype = 'f' AND f.confrelid = c.oid)
"""
"""The primary keys of the projection's tables in a schema (but those a foreign key needs)."""


@dataclass(frozen=True)
class Key:
    table: str
    name: str
    definition: str


async def primary_keys(conn: asyncpg.Connection, schema: str, projection: Projection) -> list[Key]:
    rows = await conn.fetch(PRIMARY_KEYS, schema, list(projection.table_names))
    return [Key(r["table"], r["name"], r["definition"]) for r in rows]


async def drop_keys(conn: asyncpg.Connection, schema: str, keys: list[Key]) -> None:
    async with conn.transaction():
        for key in keys:
            await conn.execute(f"ALTER TABLE {quoted(schema)}.{quoted(key.table)} DROP CONSTRAINT {quoted(key.name)}")


async def restore_keys(conn: asyncpg.Connection, schema: str, keys: list[Key]) -> None:
    """Add back those of `keys` the tables lack."""
    present = {row["name"] for row in await conn.fetch(PRIMARY_KEYS, schema, list({k.table for k in keys}))}
    for key in keys:
        if key.name not in present:
            table = f"{quoted(schema)}.{quoted(key.table)}"
            await conn.execute(f"ALTER TABLE {table} ADD CONSTRAINT {quoted(key.name)} {key.definition}")


async def keys_restored(conn: asyncpg.Connection, schema: str, keys: list[Key]) -> bool:
    """False when a key is in two rows: two shares wrote the same message."""
    try:
        await restore_keys(conn, schema, keys)
    except asyncpg.UniqueViolationError as error:
        log.warning("folding apart failed (%s); folding again in one process", error)
        return False
    return True


class Counted:
    """Passes progress on, but none of the first `known` records (reported by a first attempt)."""

    def __init__(self, on_progress: Progress, known: int = 0) -> None:
        self.on_progress = on_progress
        self.known = known
        self.done = 0

    def __call__(self, n: int) -> None:
        before, self.done = self.done, self.done + n
        fresh = self.done - max(before, self.known)
        if fresh > 0:
            self.on_progress(fresh)


class Scaled:
    """Reports a record read as `FOLDED` of a record, and the rest once the rows are written: the
    COPY takes about a third of the time, and a bar at 100% should mean done."""

    FOLDED = 0.7

    def __init__(self, on_progress: Progress) -> None:
        self.on_progress = on_progress
        self.read = 0
        self.reported = 0

    def __call__(self, n: int) -> None:
        self.read += n
        self.report(int(self.read * self.FOLDED))

    def finish(self) -> None:
        self.report(self.read)

    def report(self, done: int) -> None:
        if done > self.reported:
            self.on_progress(done - self.reported)
            self.reported = done


def default_processes(projection: Projection, spans: dict[int, Span]) -> int:
    if sum(s.size for s in spans.values()) < PARALLEL_MIN_RECORDS:
        return 1
    return min(os.cpu_count() or 1, len([s for s in spans.values() if s.size]))


async def write_offsets(
    conn: asyncpg.Connection, projection: Projection, topic: str, schema: str, spans: dict[int, Span]
) -> None:
    partitions = sorted(spans)
    ends = [spans[p].end for p in partitions]
    await conn.execute(WRITE_OFFSETS.format(schema=quoted(schema)), projection.name, topic, partitions, ends)


# --- reading and folding ---------------------------------------------------------------------------


async def read_records(options: dict[str, Any], topic: str, spans: dict[int, Span]) -> AsyncGenerator[Chunk, None]:
    """The records of `spans` in chunks of one partition's, in log order per partition (a consumer
    of no group). Like `topic_reader.read_assigned`, without a `Record` made per record."""
    pending = {TopicPartition(topic, p): s for p, s in spans.items() if s.size > 0}
    if not pending:
        return
    consumer = AIOKafkaConsumer(
        **options, **FETCH_OPTIONS, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        consumer.assign(list(pending))
        for tp, span in pending.items():
            consumer.seek(tp, span.start)
        last_progress = time.monotonic()
        while pending:
            fetched = await consumer.getmany(*pending, timeout_ms=FETCH_TIMEOUT_MS, max_records=BATCH_SIZE)
            for tp, records in fetched.items():
                end = pending[tp].end
                within = records if not records or records[-1].offset < end else [r for r in records if r.offset < end]
                if within:
                    last_progress = time.monotonic()
                    yield tp.partition, within
            for tp in list(pending):
                if await consumer.position(tp) >= pending[tp].end:
                    del pending[tp]
            if pending and time.monotonic() - last_progress > STALL_SECONDS:
                raise RuntimeError(f"no record for {STALL_SECONDS:.0f}s before the end of {pending}")
    finally:
        await consumer.stop()


@dataclass
class Folded:
    read: int = 0
    skipped: list[Skipped] = field(default_factory=list)


async def fold_records(
    options: dict[str, Any],
    projection: Projection,
    topic: str,
    spans: dict[int, Span],
    fold: Fold,
    on_progress: Progress,
    keys: Conn | None = None,
) -> Folded:
    """With `keys` (a connection to the key mirror), a projection's sealed texts are opened a chunk at a time."""
    folded = Folded()
    apply = fold.apply
    sealed = projection.sealed_params if keys is not None else ()
    async with aclosing(read_records(options, topic, spans)) as chunks:
        async for partition, records in chunks:
            chunk: list[Params] = []
            for r in records:
                params = fast_params(projection, r.value)
                if params is None:
                    judged = to_params(projection, Record(partition, r.offset, r.value, r.key))
                    if isinstance(judged, Skipped):
                        folded.skipped.append(judged)
                        continue
                    params = judged
                if sealed:
                    chunk.append(params)
                else:
                    apply(params)
            if chunk and keys is not None:
                for params in await OPENER.open(keys, chunk, sealed):
                    apply(params)
            folded.read += len(records)
            on_progress(len(records))
    return folded


@contextmanager
def no_collection() -> Iterator[None]:
    """The fold allocates millions of objects that all live to the end: the cyclic collector
    would walk them again and again for nothing."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


async def copy_rows(conn: asyncpg.Connection, schema: str, tables: list[TableRows]) -> None:
    for table in tables:
        await conn.copy_records_to_table(
            table.table, records=table.rows, columns=list(table.columns), schema_name=schema
        )


async def load_in_process(
    conn: asyncpg.Connection,
    options: dict[str, Any],
    projection: Projection,
    topic: str,
    schema: str,
    spans: dict[int, Span],
    on_progress: Progress,
) -> int:
    fold = fold_for(projection)
    assert fold is not None, "checked by bulk_load"
    scaled = Scaled(on_progress)
    with no_collection():
        folded = await fold_records(options, projection, topic, spans, fold, scaled, conn)
        report(projection, topic, folded.skipped)
        async with conn.transaction():
            await copy_rows(conn, schema, fold.rows())
    scaled.finish()
    return folded.read


# --- in several processes --------------------------------------------------------------------------


@dataclass(frozen=True)
class Share:
    database_url: str
    options: dict[str, Any]
    projection: Projection
    topic: str
    schema: str
    spans: dict[int, Span]
    slot: int


@dataclass
class ShareOutcome:
    read: int
    skipped: list[Skipped]
    chat_ids: set[UUID]
    strangers: int
    conflict: str = ""
    """Why the share's rows could not be written beside the others' (a key another share wrote)."""


DONE: Any = None
"""The records done by each process (a shared array, one slot each; set in each process)."""


def start_process(done: Any) -> None:
    global DONE  # noqa: PLW0603  the one way to hand shared memory to a pool's processes
    DONE = done


def ready() -> None:
    """A task that only makes the pool start a process (which imports this module)."""


class Workers:
    """The processes that fold shares, started ahead of their first share (`warm`, called when the
    users and chats are loaded, before the messages) so that it does not wait the second or so a
    new interpreter takes to import the project; stopped once idle for `IDLE_S`."""

    IDLE_S = 30.0
    SLOTS = 64

    def __init__(self) -> None:
        self.pool: ProcessPoolExecutor | None = None
        self.size = 0
        self.done: Any = None
        self.idle: asyncio.TimerHandle | None = None

    def warm(self, size: int) -> None:
        if self.pool is None or self.size < size:
            self.stop()
            context = multiprocessing.get_context("spawn")
            self.done = context.Array("q", self.SLOTS, lock=False)
            self.pool = ProcessPoolExecutor(size, mp_context=context, initializer=start_process, initargs=(self.done,))
            self.size = size
            for _ in range(size):
                self.pool.submit(ready)
        self.keep_alive()

    def use(self, size: int) -> tuple[ProcessPoolExecutor, Any]:
        self.warm(size)
        assert self.pool is not None
        for slot in range(size):
            self.done[slot] = 0
        return self.pool, self.done

    def keep_alive(self) -> None:
        if self.idle is not None:
            self.idle.cancel()
        self.idle = asyncio.get_running_loop().call_later(self.IDLE_S, self.stop)

    def stop(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None


WORKERS = Workers()


def load_share(share: Share) -> ShareOutcome:
    """In a process of the pool: fold the share's partitions and COPY their rows."""
    with no_collection(), asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(fold_and_copy(share))


async def fold_and_copy(share: Share) -> ShareOutcome:
    fold = MessagesFold()

    def count(n: int) -> None:
        DONE[share.slot] += n

    scaled = Scaled(count)
    conn = await asyncpg.connect(share.database_url)
    try:
        folded = await fold_records(share.options, share.projection, share.topic, share.spans, fold, scaled, conn)
        outcome = ShareOutcome(folded.read, folded.skipped, fold.chat_ids(), fold.strangers())
        try:
            async with conn.transaction():
                await copy_rows(conn, share.schema, fold.rows())
        except (asyncpg.UniqueViolationError, asyncpg.DeadlockDetectedError) as error:
            outcome.conflict = str(error)
    finally:
        await conn.close()
    scaled.finish()
    return outcome


def shares(spans: dict[int, Span], count: int) -> list[dict[int, Span]]:
    """`spans` dealt out into `count` groups of about the same number of records."""
    groups: list[dict[int, Span]] = [{} for _ in range(count)]
    sizes = [0] * count
    for partition, span in sorted(spans.items(), key=lambda item: -item[1].size):
        smallest = sizes.index(min(sizes))
        groups[smallest][partition] = span
        sizes[smallest] += span.size
    return [g for g in groups if g]


async def load_in_processes(
    database_url: str,
    options: dict[str, Any],
    projection: Projection,
    topic: str,
    schema: str,
    spans: dict[int, Span],
    count: int,
    on_progress: Progress,
) -> int | None:
    """Fold and COPY in `count` processes; None when the shares met (the caller empties the tables)."""
    groups = shares(spans, count)
    pool, done = WORKERS.use(len(groups))
    loop = asyncio.get_running_loop()
    futures = [
        loop.run_in_executor(pool, load_share, Share(database_url, options, projection, topic, schema, group, slot))
        for slot, group in enumerate(groups)
    ]
    try:
        outcomes = await with_progress(asyncio.gather(*futures), done, len(groups), on_progress)
    except BaseException:
        WORKERS.stop()
        raise
    WORKERS.keep_alive()
    for outcome in outcomes:
        report(projection, topic, outcome.skipped)
    why = overlap(outcomes)
    if why:
        log.warning("%s: folding apart failed (%s); folding again in one process", projection.name, why)
        return None
    return sum(o.read for o in outcomes)


async def with_progress(
    work: asyncio.Future[list[ShareOutcome]], done: Any, slots: int, on_progress: Progress
) -> list[ShareOutcome]:
    reported = 0
    while True:
        try:
            return await asyncio.wait_for(asyncio.shield(work), PROGRESS_EVERY_S)
        except TimeoutError:
            pass
        finally:
            now = sum(done[:slots])
            if now > reported:
                on_progress(now - reported)
                reported = now


def overlap(outcomes: list[ShareOutcome]) -> str:
    """Why the shares' folds may have needed each other's rows ("" when they cannot have)."""
    conflicts = [o.conflict for o in outcomes if o.conflict]
    if conflicts:
        return conflicts[0]
    if any(o.strangers for o in outcomes):
        return "an edit or deletion of a message its share does not hold"
    seen: set[UUID] = set()
    for outcome in outcomes:
        if not seen.isdisjoint(outcome.chat_ids):
            return "a chat's events in partitions of two shares"
        seen |= outcome.chat_ids
    return ""


async def truncate(conn: asyncpg.Connection, projection: Projection, schema: str) -> None:
    names = ", ".join(f"{quoted(schema)}.{quoted(name)}" for name in projection.table_names)
    await conn.execute(f"TRUNCATE {names}")


# --- by the statement ------------------------------------------------------------------------------


async def load_by_statement(
    database_url: str,
    reader: TopicReader,
    projection: Projection,
    topic: str,
    schema: str,
    spans: dict[int, Span],
    on_progress: Progress,
) -> int:
    """Every record through `projection.statement`, in one transaction (nothing is notified)."""
    conn = await asyncpg.connect(database_url, server_settings={"search_path": quoted(schema)})
    read = 0
    started = time.monotonic()
    try:
        async with conn.transaction(), aclosing(read_records(reader.options, topic, spans)) as chunks:
            async for partition, records in chunks:
                batch = [Record(partition, r.offset, r.value, r.key) for r in records]
                rows, skipped = decode_all(projection, batch)
                if rows and projection.sealed_params:
                    rows = await OPENER.open(conn, rows, projection.sealed_params)
                if rows:
                    await conn.executemany(projection.statement, rows)
                report(projection, topic, skipped)
                read += len(batch)
                on_progress(len(batch))
    finally:
        await conn.close()
    log.info("%s: %d records by the statement in %.1fs", projection.name, read, time.monotonic() - started)
    return read
