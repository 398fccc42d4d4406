"""A Faust table's local store read and written by partition: RocksDB (`rocksdict`) or memory.

The agents write a key to the partition of its chat or name, which is not always the partition of
the record Faust is processing (a batch holds commands of several partitions), and Faust's RocksDB
store picks its database by the current record. So every read and write of the agents names its
partition here, and a RocksDB write is the same bytes as its changelog record: what recovery would
have put there. Faust remembers, in each partition's database, the changelog offset it holds up to
(`set_persisted_offset`) and recovers only the changelog after it; the agents' writes bypass
Faust's own changelog path, so `Outbox` reports their offsets here once the broker has them.

The memory store (`TABLE_STORE=memory`) keeps every key on the heap and recovers each table from
the whole changelog at every start; it stays for comparison (`make bench`) and for debugging.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from faust.types import TP, TableT

STORES = {"rocksdb": "rocksdb://", "memory": "memory://"}

ROCKSDB_OPTIONS: dict[str, Any] = {
    "write_buffer_size": 1 << 20,
    "max_write_buffer_number": 2,
    "block_cache_size": 16 << 20,
    "bloom_filter_size": 10,
    "block_cache_compressed_size": 0,
}
"""Per partition's database: at most two 1 MiB memtables, a block cache of up to 16 MiB, and Bloom
filters of 10 bits a key. Faust's defaults (64 MiB memtables, a 2 GiB cache, each per database)
would let 4 tables x 8 partitions hold gigabytes; the decisions read recent keys, which the
memtables and the OS page cache serve. Every new send looks up a message id that is not there
(`message_index`): Faust's 3 bits a key let about a quarter of those misses read a data block
(profiled: the lookup was 15% of the worker's samples with a 2 MiB cache); with 10 bits about 1%."""


def table_options() -> dict[str, Any]:
    """A fresh copy for each table: Faust's RocksDB store pops keys from the dict it is given."""
    return dict(ROCKSDB_OPTIONS)


def is_rocksdb(table: TableT[Any, Any]) -> bool:
    return hasattr(table.data, "_db_for_partition")


def get(table: TableT[str, Any], partition: int, key: str) -> Any:
    """The value of `key` in `partition`, or None."""
    store: Any = table.data
    if not is_rocksdb(table):
        return store.get(key)
    raw = store._db_for_partition(partition).get(store._encode_key(key))
    return None if raw is None else store._decode_value(raw)


def put(table: TableT[str, Any], partition: int, key: str, value: Any, key_bytes: bytes, value_bytes: bytes) -> None:
    """Set `key` in `partition`: `key_bytes`/`value_bytes` are its changelog record's (RocksDB
    holds those); the memory store is told the key's partition, as recovery tells it, so that it
    drops the key when the partition is revoked and the console counts it in the right partition."""
    store: Any = table.data
    if is_rocksdb(table):
        store._db_for_partition(partition).put(key_bytes, value_bytes)
        store._key_index[key_bytes] = partition
        return
    store[key] = value
    key_partitions = getattr(store, "_key_partition", None)
    if key_partitions is not None:
        key_partitions[key] = partition


def persisted(table: TableT[str, Any], partition: int, offset: int) -> None:
    """The changelog of `table` is in the local store up to `offset` of `partition` (RocksDB only):
    the next recovery starts after it. Called once the record at `offset` is durable."""
    store: Any = table.data
    if is_rocksdb(table) and partition in store._dbs:  # a revoked partition's database stays closed
        tp = TP(table.changelog_topic.get_topic_name(), partition)
        held = store.persisted_offset(tp)
        if held is None or held < offset:
            store.set_persisted_offset(tp, offset)


def keys_by_partition(table: TableT[Any, Any], partitions: set[int]) -> Iterator[tuple[Any, int]]:
    """(key, partition) of every key of `partitions` in this worker's RocksDB store."""
    store: Any = table.data
    for partition in sorted(partitions):
        db = store._dbs.get(partition)
        if db is not None:
            for raw in store._visible_keys(db):
                yield store._decode_key(raw), partition


def count_by_partition(table: TableT[Any, Any], partitions: set[int]) -> dict[int, int]:
    """Keys per partition of `partitions` in this worker's RocksDB store: a walk of the keys (the
    console's cost, in C inside RocksDB but one Python step a key)."""
    store: Any = table.data
    return {p: sum(1 for _ in store._visible_keys(store._dbs[p])) if p in store._dbs else 0 for p in partitions}


def partition_of(table: TableT[str, Any], partitions: set[int], key: str) -> int | None:
    """Which of `partitions` holds `key` in this worker's RocksDB store."""
    store: Any = table.data
    raw_key = store._encode_key(key)
    for partition in sorted(partitions):
        db = store._dbs.get(partition)
        if db is not None and db.get(raw_key) is not None:
            return partition
    return None
