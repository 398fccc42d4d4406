"""How the read models tell the gateways what they have applied (contract, "Consistency").

A projection that moves its `next_offset` for a (topic, partition) says so, in the same
transaction as the rows, with PostgreSQL's `NOTIFY` on `CHANNEL`; the payload is one
`ProjectionProgress` as text, `<projection>:<topic>:<partition>:<next_offset>`. The projections
write it (`projections/apply.py`, in SQL), the gateway reads it (`gateway/infra/consistency.py`).
"""

from __future__ import annotations

from typing import NamedTuple

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
