"""What a projection is: the topic it reads, the tables it owns, and one statement per event.

Every event of a batch becomes one execution of the projection's `statement`, with the
parameters its `params` function gives, all sent in log order through one pipelined
`executemany`: one round trip per batch, and exactly the result of applying the events one by
one. So where a batch starts and ends (the live worker's batches, the rebuild's) never changes
the rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from schemas.events import Event
from schemas.topics import TopicSpec


class Record(NamedTuple):
    """One record of an event topic as read from Kafka, before decoding."""

    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = None
    timestamp_ms: int | None = None
    """Kept for a dead letter (`projections.dead_letters`); None where the reader did not keep them."""


@dataclass(frozen=True)
class Table:
    name: str
    key: tuple[str, ...]
    """The primary key, the order of the rows in a checksum."""


class UnexpectedEvent(Exception):
    """A well-formed event of a type this projection does not read (it belongs to another topic)."""


Params = tuple[object, ...]


@dataclass(frozen=True)
class Projection:
    name: str
    topic: TopicSpec
    tables: tuple[Table, ...]
    statement: str
    params: Callable[[Event], Params]
    """The statement's parameters for one event; raises `UnexpectedEvent` for a foreign type."""

    @property
    def table_names(self) -> Sequence[str]:
        return [t.name for t in self.tables]
