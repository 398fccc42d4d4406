"""How the read models tell the gateways what they have applied (contract, "Consistency"), and
how far a rebuild of a read model has come (`RebuildProgress`, read by the operator console).

A projection that moves its `next_offset` for a (topic, partition) says so, in the same
transaction as the rows, with PostgreSQL's `NOTIFY` on `CHANNEL`; the payload is one
`ProjectionProgress` as text, `<projection>:<topic>:<partition>:<next_offset>`. The projections
write it (`projections/apply.py`, in SQL), the gateway reads it (`gateway/infra/consistency.py`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict

CHANNEL = "projection_progress"

PAYLOAD_SQL = "concat_ws(':', projection, topic, partition, next_offset)"
"""The payload built in SQL from a `projection_offsets` row; `encode` is its Python twin."""
SNAPSHOT_SQL = "SELECT projection, topic, partition, next_offset FROM projection_offsets"
"""Where every projection is now, one `ProjectionProgress` a row: what a listener reads after it
(re)connects, since the notifications sent while it was away are lost to it."""


class ProjectionProgress(NamedTuple):
    projection: str
    topic: str
    partition: int
    next_offset: int
    """The offset of the first record of (topic, partition) the projection has not applied."""

    def encode(self) -> str:
        return f"{self.projection}:{self.topic}:{self.partition}:{self.next_offset}"

    @classmethod
    def decode(cls, payload: str) -> ProjectionProgress:
        """ValueError for a payload that is none (split from the right: Kafka topic names hold no ':')."""
        projection, topic, partition, next_offset = payload.rsplit(":", 3)
        return cls(projection, topic, int(partition), int(next_offset))


RebuildPhase = Literal["bulk", "indexes", "catch_up", "checksum", "swap", "done", "failed"]
"""bulk: the shadow tables loaded from the log; indexes: their constraints and indexes made;
catch_up: the shadow brought to the live end; checksum: shadow and live compared at the same
offsets; swap: the shadow becoming live; done, failed: the end."""

REBUILD_LOCK_CLASS = 7_000_003
"""The first key of the advisory lock a rebuild of a projection holds, `hashtext(projection)` the
second (next to `projections.migrate.MIGRATION_LOCK` 7000001)."""

ENDED_UNFINISHED = "the rebuild process ended without finishing"

REBUILD_PROGRESS_SQL = f"""
SELECT r.projection,
       CASE WHEN r.phase IN ('done', 'failed') OR held.projection IS NOT NULL THEN r.phase ELSE 'failed' END AS phase,
       r.done, r.total, r.events_per_s, r.eta_s, r.started_at, r.updated_at,
       CASE WHEN r.phase IN ('done', 'failed') OR held.projection IS NOT NULL THEN r.error
            ELSE '{ENDED_UNFINISHED}' END AS error
FROM rebuild_progress AS r
LEFT JOIN LATERAL (
    SELECT r.projection FROM pg_locks AS l
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND l.classid = {REBUILD_LOCK_CLASS}::oid AND l.objid = hashtext(r.projection)::oid
    LIMIT 1
) AS held ON true
ORDER BY r.started_at
"""
"""The last rebuild of each projection: a row left in a running phase by a process that died (its
advisory lock is no longer held) reads as failed."""


class RebuildProgress(BaseModel):
    """How far the last rebuild of one projection has come (a row of `rebuild_progress`)."""

    model_config = ConfigDict(frozen=True)

    projection: str
    phase: RebuildPhase
    done: int
    """Units of the phase done: records (bulk, catch_up), indexes, tables (checksum)."""
    total: int
    events_per_s: float
    """Records per second over the phase so far (0 in phases that do not read records)."""
    eta_s: float | None
    """Seconds the phase should still take at that rate (None when unknown)."""
    started_at: datetime
    updated_at: datetime
    error: str
    """Why it failed ("" otherwise)."""
