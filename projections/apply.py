"""Applies a batch of records of one topic to a projection's tables, once each, in one transaction.

Shared by the Faust agents and the rebuild. Per (projection, topic, partition) the row of
`projection_offsets` holds `next_offset`: it is locked (`SELECT ... FOR UPDATE`) before the rows
are written and moved after them in the same transaction, so a record at an offset below it was
applied already and is skipped, and a batch delivered twice (at-least-once) changes nothing.
Each move is announced as a `schemas.progress.ProjectionProgress` on its channel, sent by
PostgreSQL at commit; a rebuild applying to its shadow tables (`notify=False`) announces nothing,
since the gateways would take it for the live model's progress. The live worker passes its
projection's `version`: the batch is refused (`VersionChanged`, nothing written) once
`projection_versions` holds another one, read after the offsets are locked, so after a swap that
changed it.

A record that is no event of this projection (malformed, of an unknown type, unstorable) is
logged, counted and skipped; its offset still advances, so it never stops its partition. The live
worker also sends it to the dead letters (`projections.dead_letters`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from projections.metrics import APPLIED_EVENTS, BAD_RECORDS
from projections.model import Params, Projection, Record, UnexpectedEvent
from projections.sealed_texts import OPENER
from schemas.events import BadRecord, UnknownEventType, decode_event
from schemas.progress import CHANNEL, PAYLOAD_SQL

log = logging.getLogger(__name__)

Conn = asyncpg.Connection | PoolConnectionProxy
"""A connection of its own or one lent by a pool."""

BIGINT = range(-(2**63), 2**63)

ENSURE_OFFSETS = """
INSERT INTO projection_offsets (projection, topic, partition, next_offset)
SELECT $1, $2, p, 0 FROM unnest($3::int[]) AS p
ON CONFLICT DO NOTHING
"""
LOCK_OFFSETS = """
SELECT partition, next_offset FROM projection_offsets
WHERE projection = $1 AND topic = $2 AND partition = ANY($3::int[])
ORDER BY partition
FOR UPDATE
"""
MOVE_OFFSETS = """
UPDATE projection_offsets AS o SET next_offset = n.next_offset, updated_at = now()
FROM unnest($3::int[], $4::bigint[]) AS n (partition, next_offset)
WHERE o.projection = $1 AND o.topic = $2 AND o.partition = n.partition
  AND n.next_offset > o.next_offset
"""
ADVANCE_OFFSETS = f"""
WITH moved AS ({MOVE_OFFSETS}
    RETURNING o.projection, o.topic, o.partition, o.next_offset
)
SELECT pg_notify('{CHANNEL}', {PAYLOAD_SQL})
FROM moved
"""
STORED_VERSION = "SELECT version FROM projection_versions WHERE projection = $1"


@dataclass(frozen=True)
class Skipped:
    record: Record
    reason: str
    """A label value of `projection_bad_records_total`: malformed, unknown_type, unstorable."""
    detail: str


class DeadLetterSink(Protocol):
    """Where a worker's skipped records go (`projections.dead_letters`): durable once `send` returns."""

    async def send(self, projection: str, topic: str, skipped: Sequence[Skipped]) -> None: ...


@dataclass
class BatchOutcome:
    applied: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    next_offsets: dict[int, int] = field(default_factory=dict)
    """The partitions this batch moved, and where to."""


class VersionChanged(Exception):
    """`projection_versions` holds another version than the code's: this code must not write."""

    def __init__(self, projection: str, declared: int, stored: int) -> None:
        super().__init__(f"{projection}: the live read model is version {stored}, this code writes version {declared}")
        self.projection = projection
        self.declared = declared
        self.stored = stored


class OffsetGap(Exception):
    """The first new record of a partition lies after `next_offset`: records in between are missing."""

    def __init__(self, partition: int, expected: int, first: int) -> None:
        super().__init__(f"partition {partition}: next_offset is {expected}, first record is at {first}")
        self.partition = partition
        self.expected = expected
        self.first = first


def new_records(records: Sequence[Record], stored: dict[int, int]) -> tuple[list[Record], dict[int, int]]:
    """The records at or after their partition's `next_offset` (each once), and the offsets after them."""
    following = dict(stored)
    fresh = []
    for record in records:
        if record.offset >= following.get(record.partition, 0):
            fresh.append(record)
            following[record.partition] = record.offset + 1
    moved = {p: o for p, o in following.items() if o != stored.get(p, 0)}
    return fresh, moved


def check_contiguous(fresh: Sequence[Record], stored: dict[int, int]) -> None:
    seen: set[int] = set()
    for record in fresh:
        if record.partition not in seen:
            seen.add(record.partition)
            expected = stored.get(record.partition, 0)
            if record.offset > expected:
                raise OffsetGap(record.partition, expected, record.offset)


def storable(params: Params) -> bool:
    """False for a value PostgreSQL cannot hold (a NUL in text, an integer beyond bigint)."""
    for value in params:
        if isinstance(value, str) and "\x00" in value:
            return False
        if isinstance(value, int) and not isinstance(value, bool) and value not in BIGINT:
            return False
    return True


def to_params(projection: Projection, record: Record) -> Params | Skipped:
    try:
        if projection.decode is not None:
            params = projection.decode(record)
        else:
            params = projection.params(decode_event(record.value))
    except UnknownEventType as error:
        return Skipped(record, "unknown_type", str(error))
    except UnexpectedEvent as error:
        return Skipped(record, "unknown_type", f"{error} is no event of the {projection.name} projection")
    except BadRecord as error:
        return Skipped(record, "malformed", str(error))
    except Exception as error:  # an upcaster's bug must not stop the partition either
        return Skipped(record, "malformed", f"{type(error).__name__}: {error}".splitlines()[0])
    if not storable(params):
        detail = "a value PostgreSQL cannot store (NUL in text or integer out of range)"
        return Skipped(record, "unstorable", detail)
    return params


def decode_all(projection: Projection, records: Sequence[Record]) -> tuple[list[Params], list[Skipped]]:
    rows: list[Params] = []
    skipped: list[Skipped] = []
    for record in records:
        outcome = to_params(projection, record)
        if isinstance(outcome, Skipped):
            skipped.append(outcome)
        else:
            rows.append(outcome)
    return rows, skipped


async def lock_offsets(conn: Conn, projection: str, topic: str, partitions: list[int]) -> dict[int, int]:
    """Lock the partitions' rows; the rows missing (a partition's first batch) are created first,
    so a batch costs the round trip of that INSERT only when a row is missing."""
    rows = await conn.fetch(LOCK_OFFSETS, projection, topic, partitions)
    if len(rows) < len(partitions):
        await conn.execute(ENSURE_OFFSETS, projection, topic, partitions)
        rows = await conn.fetch(LOCK_OFFSETS, projection, topic, partitions)
    return {r["partition"]: r["next_offset"] for r in rows}


async def advance_offsets(
    conn: Conn, projection: str, topic: str, moved: dict[int, int], *, notify: bool = True
) -> None:
    """Move `next_offset` forward (never back) and notify, within the caller's transaction."""
    partitions = sorted(moved)
    statement = ADVANCE_OFFSETS if notify else MOVE_OFFSETS
    await conn.execute(statement, projection, topic, partitions, [moved[p] for p in partitions])


async def check_version(conn: Conn, projection: str, declared: int) -> None:
    stored = await conn.fetchval(STORED_VERSION, projection)
    if stored is not None and stored != declared:
        raise VersionChanged(projection, declared, stored)


async def apply_records(
    conn: Conn,
    projection: Projection,
    topic: str,
    records: Sequence[Record],
    *,
    contiguous: bool = False,
    notify: bool = True,
    version: int | None = None,
    dead_letters: DeadLetterSink | None = None,
) -> BatchOutcome:
    """Apply `records` of `topic` (in log order per partition) in one transaction.

    With `contiguous`, a record after a hole in a partition's offsets raises `OffsetGap` before
    anything is written (the live worker fills the hole first; a rebuild starts where the log does).
    `notify=False` on a rebuild's shadow tables; `version` (the live worker's) raises
    `VersionChanged` before anything is written when the live read model is another version.
    With `dead_letters` (the live worker), the records skipped are sent there before the offsets
    that pass them commit: a crash in between sends them again, under the same ids.
    """
    if not records:
        return BatchOutcome()
    partitions = sorted({r.partition for r in records})
    async with conn.transaction():
        stored = await lock_offsets(conn, projection.name, topic, partitions)
        if version is not None:
            await check_version(conn, projection.name, version)
        fresh, moved = new_records(records, stored)
        if contiguous:
            check_contiguous(fresh, stored)
        rows, skipped = decode_all(projection, fresh)
        if rows and projection.sealed_params:
            rows = await OPENER.open(conn, rows, projection.sealed_params)
        if rows:
            await conn.executemany(projection.statement, rows)
        if skipped and dead_letters is not None:
            await dead_letters.send(projection.name, topic, skipped)
        if moved:
            await advance_offsets(conn, projection.name, topic, moved, notify=notify)
    report(projection, topic, skipped)
    APPLIED_EVENTS.labels(projection.name).inc(len(rows))
    return BatchOutcome(len(rows), skipped, moved)


def report(projection: Projection, topic: str, skipped: list[Skipped]) -> None:
    for s in skipped:
        log.warning(
            "%s projection skipped a bad record: topic=%s partition=%d offset=%d reason=%s: %s",
            projection.name,
            topic,
            s.record.partition,
            s.record.offset,
            s.reason,
            s.detail,
        )
        BAD_RECORDS.labels(projection.name, s.reason).inc()
