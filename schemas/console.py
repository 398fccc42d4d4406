"""The JSON of the operator console (`console/`): what a worker answers its peers, and every page's
JSON (`?format=json` or `Accept: application/json`) that scripts read.

A worker answers for its own share of the tables (`Local*`); the worker that renders a page merges
the shares of every worker of its app (`TablesPage`, `KeysPage`, `ValuePage`). A worker that does not
answer is listed with `answered=false`, never left out.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.dead_letters import DeadLetterPage
from schemas.progress import RebuildProgress

PartitionState = Literal["active", "standby", "recovering"]
MergedState = Literal["active", "standby", "recovering", "not answering", "unassigned", "moving"]
"""`moving`: the assignment names an owner that does not report the partition (a rebalance)."""

CONSUMER_GROUPS = ("messenger-streams", "messenger-projections", "gateway-delivery")
"""The system's consumer groups, before the topic prefix: the streams and projections apps' ids
(`streams.app`, `projections.app`) and the gateways' delivery group (`gateway.ws.delivery`)."""

KEYS_LIMIT_DEFAULT = 50
KEYS_LIMIT_MAX = 1000


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --- what one worker answers its peers (/console/internal/...) -------------------------------------------


class LocalPartition(Model):
    partition: int
    state: PartitionState
    keys: int
    offset: int | None = None
    """Recovery: the changelog offset applied so far (None when not recovering)."""
    highwater: int | None = None
    remaining: int = 0


class LocalTable(Model):
    name: str
    partitions: list[LocalPartition]
    unplaced_keys: int = 0
    """Keys whose partition this worker does not know (not counted in any partition)."""


class LocalTables(Model):
    worker: str
    app: str
    rebalancing: bool
    tables: list[LocalTable]


class KeyLocation(Model):
    key: str
    partition: int
    worker: str


class LocalKeys(Model):
    keys: list[KeyLocation]
    more: bool
    """True when this worker holds more matching keys after the last one listed."""


class LocalValue(Model):
    found: bool
    value: Any = None
    partition: int | None = None


# --- the pages ------------------------------------------------------------------------------------


class WorkerStatus(Model):
    url: str
    answered: bool
    error: str = ""
    this_worker: bool = False


class PartitionView(Model):
    partition: int
    owner: str | None
    owner_answered: bool
    state: MergedState
    keys: int | None
    """None when the owner did not answer (or there is none)."""
    changelog_end_offset: int | None
    recovered_offset: int | None = None
    highwater: int | None = None
    remaining: int = 0
    standbys: list[str] = Field(default_factory=list)


class TableView(Model):
    name: str
    help: str
    changelog_topic: str
    total_keys: int
    complete: bool
    """False when some partition's owner did not answer: `total_keys` counts only the others."""
    partitions: list[PartitionView]


class TablesPage(Model):
    app: str
    served_by: str
    has_tables: bool
    note: str = ""
    rebalancing: bool = False
    workers: list[WorkerStatus]
    tables: list[TableView]


class KeysPage(Model):
    table: str
    prefix: str
    after: str | None
    limit: int
    keys: list[KeyLocation]
    next_after: str | None
    """Pass back as `after` for the next page; None on the last page."""
    complete: bool
    workers: list[WorkerStatus]


class ValuePage(Model):
    table: str
    key: str
    found: bool
    value: Any = None
    partition: int | None = None
    worker: str | None = None
    complete: bool
    workers: list[WorkerStatus]


class GroupOffset(Model):
    group: str
    committed: int | None
    lag: int | None


class TopicPartitionView(Model):
    partition: int
    end_offset: int
    groups: list[GroupOffset]


class TopicView(Model):
    name: str
    doc: str
    key: str
    exists: bool
    partitions: list[TopicPartitionView]


class ProjectionPartitionLag(Model):
    partition: int
    end_offset: int
    next_offset: int
    lag_events: int
    lag_seconds: float | None
    """Event time of the newest record minus that of the last applied one; 0 when caught up,
    None when a record's time could not be read."""


class ProjectionLag(Model):
    projection: str
    topic: str
    lag_events: int
    partitions: list[ProjectionPartitionLag]


class TopicsPage(Model):
    served_by: str
    topic_prefix: str
    """`TOPIC_PREFIX`: every topic and group name below starts with it."""
    groups: list[str]
    topics: list[TopicView]
    projections: list[ProjectionLag]
    projections_error: str = ""


class BadRecordsPage(Model):
    """The dead letters (`schemas.dead_letters`), newest first, a page after cursor `after`."""

    served_by: str
    available: bool
    reason: str = ""
    """Why the list cannot be read (the topic, Kafka), when `available` is false."""
    consumer: str | None = None
    after: str | None = None
    page: DeadLetterPage | None = None


class RebuildPage(Model):
    """The last rebuild of each projection ever rebuilt (`schemas.progress.RebuildProgress`)."""

    served_by: str
    available: bool
    reason: str = ""
    rebuilds: list[RebuildProgress] = Field(default_factory=list)
