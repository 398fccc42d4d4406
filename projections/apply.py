"""Applies a batch of records of one topic to a projection's tables, once each, in one transaction.

Shared by the Faust agents and the rebuild. Per (projection, topic, partition) the row of
`projection_offsets` holds `next_offset`: it is locked (`SELECT ... FOR UPDATE`) before the rows
are written and moved after them in the same transaction, so a record at an offset below it was
applied already and is skipped, and a batch delivered twice (at-least-once) changes nothing.
Each move is announced as a `schemas.progress.ProjectionProgress` on its channel, sent by
PostgreSQL at commit.

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
ADVANCE_OFFSETS = f"""
WITH moved AS (
    UPDATE projection_offsets AS o SET next_offset = n.next_offset, updated_at = now()
    FROM unnest($3::int[], $4::bigint[]) AS n (partition, next_offset)
    WHERE o.projection = $1 AND o.topic = $2 AND o.partition = n.partition
      AND n.next_offset > o.next_offset
    RETURNING o.projection, o.topic, o.partition, o.next_offset
)
SELECT pg_notify('{CHANNEL}', {PAYLOAD_SQL})
FROM moved
"""


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
    await conn.execute(ENSURE_OFFSETS, projection, topic, partitions)
    rows = await conn.fetch(LOCK_OFFSETS, projection, topic, partitions)
    return {r["partition"]: r["next_offset"] for r in rows}


async def advance_offsets(conn: Conn, projection: str, topic: str, moved: dict[int, int]) -> None:
    """Move `next_offset` forward (never back) and notify, within the caller's transaction."""
    partitions = sorted(moved)
    await conn.execute(ADVANCE_OFFSETS, projection, topic, partitions, [moved[p] for p in partitions])


async def apply_records(
    conn: Conn,
    projection: Projection,
    topic: str,
    records: Sequence[Record],
    *,
    contiguous: bool = False,
    dead_letters: DeadLetterSink | None = None,
) -> BatchOutcome:
    """Apply `records` of `topic` (in log order per partition) in one transaction.

    With `contiguous`, a record after a hole in a partition's offsets raises `OffsetGap` before
    anything is written (the live worker fills the hole first; a rebuild starts where the log does).
    With `dead_letters` (the live worker), the records skipped are sent there before the offsets
    that pass them commit: a crash in between sends them again, under the same ids.
    """
    if not records:
        return BatchOutcome()
    partitions = sorted({r.partition for r in records})
    async with conn.transaction():
        stored = await lock_offsets(conn, projection.name, topic, partitions)
        fresh, moved = new_records(records, stored)
        if contiguous:
            check_contiguous(fresh, stored)
        rows, skipped = decode_all(projection, fresh)
        if rows:
            await conn.executemany(projection.statement, rows)
        if skipped and dead_letters is not None:
            await dead_letters.send(projection.name, topic, skipped)
        if moved:
            await advance_offsets(conn, projection.name, topic, moved)
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
