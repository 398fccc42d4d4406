"""The projections worker's mirror of `content.keys` in PostgreSQL (`content_keys`), from which
the projections and the rebuild open sealed texts (docs/erasure.md).

The mirror follows the compacted topic: a data key is stored under its key id; a tombstone sets
the key to null and `shredded_at` (the tombstone's time), and the row stays, so that an erased text
(shredded on purpose) is told from a lost key (no row). The mirror is pulled, not pushed:
`catch_up` applies everything from `projection_offsets` (projection `content_keys`) to the topic's
end at the moment it is called, in one transaction per batch, with the offsets moved in it; so a
reader that misses a key calls it and then knows: a key written before the call is in the mirror
afterwards, or it is lost. Every worker may call it at once: the offsets rows are locked, and a
record below `next_offset` is skipped. The mirror is read by `projections.sealed_texts`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from prometheus_client import Counter

from projections.apply import advance_offsets, lock_offsets, new_records
from projections.model import Record
from projections.sealed_texts import CatchUp
from projections.topic_reader import Span, TopicMissing, TopicReader
from schemas.content_keys import MalformedKeyRecord, decode_key_record

log = logging.getLogger(__name__)

MIRROR = "content_keys"
"""Its name in `projection_offsets`."""
BATCH_SIZE = 2000

BAD_KEY_RECORDS = Counter("projection_bad_key_records_total", "Records of content.keys that are no key nor tombstone")

Conn = asyncpg.Connection | PoolConnectionProxy
"""A connection of its own or one lent by a pool."""

WRITE = """
INSERT INTO content_keys AS k (key_id, key, owner_id, shredded_at)
SELECT key_id, key, owner_id, CASE WHEN key IS NULL THEN at END
FROM unnest($1::text[], $2::bytea[], $3::uuid[], $4::timestamptz[]) AS t (key_id, key, owner_id, at)
ON CONFLICT (key_id) DO UPDATE
SET key = excluded.key, owner_id = coalesce(excluded.owner_id, k.owner_id), shredded_at = excluded.shredded_at
"""
"""The latest state of each key id: a key, or shredded (the owner stays known)."""


@dataclass
class MirrorOutcome:
    applied: int = 0
    malformed: list[Record] = field(default_factory=list)


@dataclass(frozen=True)
class KeyState:
    key_id: str
    key: bytes | None
    owner_id: uuid.UUID | None
    at: datetime


def state_of(record: Record) -> KeyState:
    """What one record says of its key id; `MalformedKeyRecord` for a record that says nothing."""
    key_id, content_key = decode_key_record(record.key, record.value)
    stamp = record.timestamp_ms
    at = datetime.fromtimestamp(stamp / 1000, UTC) if stamp is not None and stamp >= 0 else datetime.now(UTC)
    if content_key is None:
        return KeyState(key_id, None, None, at)
    return KeyState(key_id, content_key.key_bytes, content_key.owner_id, at)


def latest_states(records: Iterable[Record]) -> tuple[dict[str, KeyState], list[Record]]:
    """The last state of each key id among `records` (in log order), and the malformed records."""
    latest: dict[str, KeyState] = {}
    malformed: list[Record] = []
    for record in records:
        try:
            state = state_of(record)
        except MalformedKeyRecord as error:
            log.warning("content.keys: skipped record %d@%d: %s", record.partition, record.offset, error)
            BAD_KEY_RECORDS.inc()
            malformed.append(record)
            continue
        earlier = latest.pop(state.key_id, None)
        if earlier is not None and state.owner_id is None:
            state = KeyState(state.key_id, state.key, earlier.owner_id, state.at)
        latest[state.key_id] = state
    return latest, malformed


async def apply_key_records(conn: Conn, topic: str, records: Sequence[Record]) -> MirrorOutcome:
    """Apply `records` of `topic` (log order per partition) to the mirror, each once, in one transaction."""
    if not records:
        return MirrorOutcome()
    partitions = sorted({r.partition for r in records})
    async with conn.transaction():
        stored = await lock_offsets(conn, MIRROR, topic, partitions)
        fresh, moved = new_records(records, stored)
        latest, malformed = latest_states(fresh)
        if latest:
            states = list(latest.values())
            await conn.execute(
                WRITE,
                [s.key_id for s in states],
                [s.key for s in states],
                [s.owner_id for s in states],
                [s.at for s in states],
            )
        if moved:
            await advance_offsets(conn, MIRROR, topic, moved, notify=False)
    return MirrorOutcome(len(latest), malformed)


async def catch_up(conn: Conn, reader: TopicReader, topic: str) -> int:
    """Apply every record of `topic` from the mirror's offsets to the topic's end as it is now;
    the number of records read."""
    spans = await pending_spans(conn, reader, topic)
    read = 0
    async for batch in reader.read(topic, spans, BATCH_SIZE):
        await apply_key_records(conn, topic, batch)
        read += len(batch)
    return read


async def pending_spans(conn: Conn, reader: TopicReader, topic: str) -> dict[int, Span]:
    """From each partition's `next_offset` (or the log's start) to its end; none while the topic
    does not exist (a deployment whose topics were not created again since: it has no key yet)."""
    try:
        spans = await reader.spans(topic)
    except TopicMissing:
        log.warning("%s does not exist: no data key to mirror (python -m streams create-topics creates it)", topic)
        return {}
    rows = await conn.fetch(
        "SELECT partition, next_offset FROM projection_offsets WHERE projection = $1 AND topic = $2", MIRROR, topic
    )
    stored = {r["partition"]: r["next_offset"] for r in rows}
    return {p: Span(max(s.start, stored.get(p, 0)), s.end) for p, s in spans.items()}


def catching_up(reader: Callable[[], Awaitable[TopicReader]], topic: str, database_url: str) -> CatchUp:
    """`catch_up` from `topic` with the reader `reader` gives, on a connection of its own to the
    live schema, for `sealed_texts.OPENER.follow`."""

    async def run() -> int:
        conn = await asyncpg.connect(database_url)
        try:
            return await catch_up(conn, await reader(), topic)
        finally:
            await conn.close()

    return run
