"""This worker's share of its app's tables: what it answers its peers (`/console/internal/...`).

A key's partition is the one its changelog record went to: the RocksDB store keeps one database per
partition, the memory store (`TABLE_STORE=memory`) remembers it per key (`_key_partition`: filled by
recovery, and by `runtime.table_store.put` for live writes). It is not a hash of the key: the chat
agent writes a message's keys to its chat's partition. Only keys of
partitions this worker holds are counted or listed, so a key left behind by a revoked partition is
never counted twice; keys whose partition is unknown are counted apart (`unplaced_keys`).
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import faust
from faust.types import TP

from runtime import table_store
from schemas.console import KeyLocation, LocalKeys, LocalPartition, LocalTable, LocalTables, LocalValue


def worker_url(app: faust.App) -> str:
    return str(app.conf.canonical_url)


def changelog_of(table: Any) -> str:
    return str(table.changelog_topic.get_topic_name())


def key_partitions(table: Any) -> Mapping[Any, int]:
    """Key -> changelog partition, as the memory store keeps it (empty for a store that does not)."""
    found = getattr(table.data, "_key_partition", None)
    return found if isinstance(found, Mapping) else {}


def changelog_distribution(app: faust.App) -> dict[str, dict[str, list[int]]]:
    """Worker URL -> changelog topic -> its active partitions, for every member of the group: the
    map Faust's router uses (`PartitionAssignor.changelog_distribution`)."""
    found = getattr(app.assignor, "changelog_distribution", None) if app.assignor else None
    return {str(url): {t: list(ps) for t, ps in topics.items()} for url, topics in (found or {}).items()}


def held_partitions(app: faust.App, topic: str) -> tuple[set[int], set[int]]:
    """(active, standby) partitions of changelog `topic` assigned to this worker."""
    assignor = app.assignor
    if assignor is None:
        return set(), set()
    actives = {tp.partition for tp in assignor.assigned_actives() if tp.topic == topic}
    standbys = {tp.partition for tp in assignor.assigned_standbys() if tp.topic == topic}
    return actives, standbys


def count_by_partition(total_keys: int, partitions: Mapping[Any, int]) -> tuple[Counter[int], int]:
    """(keys per partition, keys with no known partition), counted in C: a table of a million keys
    takes tens of milliseconds of the worker's event loop, not a Python loop's second."""
    return Counter(partitions.values()), max(0, total_keys - len(partitions))


def smallest_keys(
    placed: Mapping[Any, int] | Iterable[tuple[Any, int]], held: set[int], prefix: str, after: str | None, limit: int
) -> tuple[list[tuple[str, int]], bool]:
    """The first `limit` string keys in sorted order of the `held` partitions that start with
    `prefix` and sort after `after`, and whether more follow."""
    pairs = placed.items() if isinstance(placed, Mapping) else placed
    matching = (
        (key, partition)
        for key, partition in pairs
        if partition in held and isinstance(key, str) and key.startswith(prefix) and (after is None or key > after)
    )
    first = heapq.nsmallest(limit + 1, matching)
    return first[:limit], len(first) > limit


def partition_state(app: faust.App, topic: str, partition: int, active: bool, keys: int) -> LocalPartition:
    recovery: Any = getattr(app.tables, "recovery")  # noqa: B009  (the manager's type does not declare it)
    tp = TP(topic, partition)
    offsets = recovery.active_offsets if active else recovery.standby_offsets
    highwaters = recovery.active_highwaters if active else recovery.standby_highwaters
    offset, highwater = offsets.get(tp), highwaters.get(tp)
    remaining = max(0, highwater - offset) if offset is not None and highwater is not None else 0
    if not active:
        return LocalPartition(partition=partition, state="standby", keys=keys, remaining=remaining)
    if recovery.in_recovery and remaining > 0:
        return LocalPartition(
            partition=partition, state="recovering", keys=keys, offset=offset, highwater=highwater, remaining=remaining
        )
    return LocalPartition(partition=partition, state="active", keys=keys)


def local_table(app: faust.App, table: Any) -> LocalTable:
    topic = changelog_of(table)
    actives, standbys = held_partitions(app, topic)
    if table_store.is_rocksdb(table):
        counts, unplaced = Counter(table_store.count_by_partition(table, actives | standbys)), 0
    else:
        counts, unplaced = count_by_partition(len(table.data), key_partitions(table))
    partitions = [partition_state(app, topic, p, p in actives, counts.get(p, 0)) for p in sorted(actives | standbys)]
    return LocalTable(name=table.name, partitions=partitions, unplaced_keys=unplaced)


def local_tables(app: faust.App) -> LocalTables:
    return LocalTables(
        worker=worker_url(app),
        app=app.conf.id,
        rebalancing=bool(app.rebalancing),
        tables=[local_table(app, t) for _, t in sorted(app.tables.items())],
    )


def local_keys(app: faust.App, table: Any, prefix: str, after: str | None, limit: int) -> LocalKeys:
    actives, _ = held_partitions(app, changelog_of(table))
    placed = table_store.keys_by_partition(table, actives) if table_store.is_rocksdb(table) else key_partitions(table)
    first, more = smallest_keys(placed, actives, prefix, after, limit)
    url = worker_url(app)
    return LocalKeys(keys=[KeyLocation(key=k, partition=p, worker=url) for k, p in first], more=more)


def local_value(app: faust.App, table: Any, key: str) -> LocalValue:
    actives, _ = held_partitions(app, changelog_of(table))
    if table_store.is_rocksdb(table):
        partition = table_store.partition_of(table, actives, key)
    else:
        partition = key_partitions(table).get(key)
        partition = partition if partition in actives and key in table.data else None
    if partition is None:
        return LocalValue(found=False)
    return LocalValue(found=True, value=table_store.get(table, partition, key), partition=partition)
