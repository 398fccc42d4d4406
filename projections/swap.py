"""The two moments a rebuild holds the live worker of a projection: the checksum's snapshot, and
the swap of the shadow tables for the live ones.

Both lock the live projection's `projection_offsets` rows `FOR UPDATE`, in partition order. A
live batch locks the rows of its partitions first thing in its transaction (in the same order),
so the live worker finishes the batch in hand and then waits, and nothing else writes the
projection's live tables meanwhile. Each wait for a lock (those rows behind a batch, the tables
behind a long reader) is bounded by `lock_timeout`: a swap that would queue every reader of the
table behind a long query gives up instead, lets everyone go, and is tried again.

The swap itself is DDL in the same short transaction: the live tables move to the retired schema,
the shadow's to `public` (names, indexes, constraints and statistics move with them), the live
offsets move up to where the shadow is (NOTIFY: the gateways' read-your-writes holds), and the
stored version becomes the shadow's. Readers wait for it like for any lock, then read the new
tables; PostgreSQL replans cached statements that named the old ones.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import asyncpg

from projections.apply import ENSURE_OFFSETS, advance_offsets
from projections.model import Projection
from projections.shadow import LIVE_SCHEMA, retired_schema, shadow_schema
from projections.versions import set_version

LOCK_TIMEOUT_MS = 300
"""The longest a swap waits for one lock before it lets go and tries again: a reader queued behind
the swap's lock waits at most about this long."""

READ_LIVE_OFFSETS = f"""
SELECT partition, next_offset FROM {LIVE_SCHEMA}.projection_offsets WHERE projection = $1 AND topic = $2
"""
LOCK_LIVE_OFFSETS = f"""
SELECT partition, next_offset FROM {LIVE_SCHEMA}.projection_offsets
WHERE projection = $1 AND topic = $2
ORDER BY partition
FOR UPDATE
"""


class OffsetsMoved(Exception):
    """A live batch wrote past the pause (a partition whose offsets row appeared after it began): the
    swap is called off and tried again."""


@dataclass
class Pauses:
    """How long the live worker was held, each time (milliseconds)."""

    ms: list[float] = field(default_factory=list)

    def longest(self) -> float:
        return max(self.ms, default=0.0)


async def ensure_offsets(conn: asyncpg.Connection, projection: Projection, topic: str, partitions: list[int]) -> None:
    """A row per partition (at 0 when new), so that the pause locks every partition a batch may touch."""
    await conn.execute(ENSURE_OFFSETS, projection.name, topic, partitions)


@asynccontextmanager
async def paused(
    live: asyncpg.Connection, projection: Projection, topic: str, pauses: Pauses
) -> AsyncIterator[dict[int, int]]:
    """A transaction on `live` holding the live offsets of `projection` (the live worker waits);
    yields them. `asyncpg.LockNotAvailableError` if a lock is not had within `LOCK_TIMEOUT_MS`."""
    async with live.transaction():
        await live.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT_MS}ms'")
        rows = await live.fetch(LOCK_LIVE_OFFSETS, projection.name, topic)
        held = time.perf_counter()
        yield {r["partition"]: r["next_offset"] for r in rows}
    pauses.ms.append((time.perf_counter() - held) * 1000)


async def swap_tables(
    live: asyncpg.Connection, projection: Projection, topic: str, held: dict[int, int], offsets: dict[int, int]
) -> None:
    """Inside `paused` (which yielded `held`): the shadow's tables become live, the live ones retired;
    the live offsets move to `offsets` (the shadow's) and the stored version to the projection's.

    `OffsetsMoved` if, once the tables are locked (nothing writes them any more), the live offsets
    are not those held: a batch got past the pause, and its rows would be left behind."""
    shadow, retired = shadow_schema(projection), retired_schema(projection)
    names = projection.table_names
    every = [f"{LIVE_SCHEMA}.{t}" for t in names] + [f"{shadow}.{t}" for t in names]
    await live.execute(f"LOCK TABLE {', '.join(every)} IN ACCESS EXCLUSIVE MODE")
    now = {r["partition"]: r["next_offset"] for r in await live.fetch(READ_LIVE_OFFSETS, projection.name, topic)}
    if now != held:
        raise OffsetsMoved(f"{projection.name}: live offsets {now}, held {held}")
    for table in names:
        await live.execute(f"ALTER TABLE {LIVE_SCHEMA}.{table} SET SCHEMA {retired}")
    for table in names:
        await live.execute(f"ALTER TABLE {shadow}.{table} SET SCHEMA {LIVE_SCHEMA}")
    await advance_offsets(live, projection.name, topic, offsets)
    await set_version(live, projection.name, projection.version)
