"""What a projection is: the topic it reads, the tables it owns, and one statement per event (or
per record, for a topic of records that are no events: `Projection.decode`).

Every event of a batch becomes one execution of the projection's `statement`, with the
parameters its `params` function gives, all sent in log order through one pipelined
`executemany`: one round trip per batch, and exactly the result of applying the events one by
one. So where a batch starts and ends (the live worker's batches, the rebuild's) never changes
the rows.

A projection also declares its tables' DDL and a `version`: the rebuild creates the tables of a
new read model from the declaration (in a shadow schema, `projections/shadow.py`), and a worker
whose version differs from the one stored in `projection_versions` builds its own before it
writes. A change of the tables, the statement or what `params` gives is a new version.
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
    columns: tuple[str, ...]
    """Column definitions in table order (type, NOT NULL, DEFAULT, CHECK), as in `CREATE TABLE`."""
    after_load: tuple[str, ...] = ()
    """DDL run once the table is loaded: unique constraints, foreign keys, secondary indexes (unqualified
    names: they run with the search path on the schema being built)."""

    def create_sql(self) -> str:
        """`CREATE TABLE` with the columns and the primary key only."""
        columns = ",\n    ".join((*self.columns, f"PRIMARY KEY ({', '.join(self.key)})"))
        return f"CREATE TABLE {self.name} (\n    {columns}\n)"


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
    version: int = 1
    """Raised with every change of the tables, the statement or the params: the version of the read
    model the code writes (`projection_versions` holds the live one)."""
    sealed_params: tuple[int, ...] = ()
    """The positions of `params` that may hold a sealed text (`projections.sealed_texts.SealedParam`),
    opened before the statement runs."""
    decode: Callable[[Record], Params] | None = None
    """For a topic whose records are no events (a compacted topic of records keyed by what they
    are about, whose tombstones have only a key): the statement's parameters of one record, read
    instead of `params`; a ValueError for a record that is none of the topic's."""

    @property
    def table_names(self) -> Sequence[str]:
        return [t.name for t in self.tables]
