"""`runtime.table_store` on a real RocksDB (rocksdict) store, and on the memory store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faust
import pytest
from faust.types import TP

from runtime import table_store


def table_on(store: str, datadir: Path) -> Any:
    app = faust.App("table-store-test", store=table_store.STORES[store], datadir=str(datadir))
    return app.Table("chat_state", partitions=4, key_type=str, options=table_store.table_options())


def write(table: Any, partition: int, key: str, value: Any) -> None:
    """What `streams.outbox.Outbox.put` does before it sends the changelog record."""
    key_bytes, _ = table.changelog_topic.prepare_key(key, table.key_serializer)
    value_bytes, _ = table.changelog_topic.prepare_value(value, table.value_serializer)
    table_store.put(table, partition, key, value, key_bytes, value_bytes)


@pytest.mark.parametrize("store", ["rocksdb", "memory"])
def test_a_key_is_read_back_from_its_partition(store: str, tmp_path: Path) -> None:
    table = table_on(store, tmp_path)
    write(table, 2, "chat-a", {"last_seq": 7, "members": {"u": "owner"}})
    assert table_store.get(table, 2, "chat-a") == {"last_seq": 7, "members": {"u": "owner"}}
    assert table_store.get(table, 2, "chat-b") is None
    assert table_store.is_rocksdb(table) == (store == "rocksdb")


def test_rocksdb_keeps_each_key_in_the_partition_it_was_written_to(tmp_path: Path) -> None:
    table = table_on("rocksdb", tmp_path)
    write(table, 2, "chat-a", {"n": 1})
    write(table, 3, "chat-b", {"n": 2})
    write(table, 3, "chat-c", {"n": 3})
    assert table_store.get(table, 1, "chat-a") is None  # not where the record went
    assert table_store.count_by_partition(table, {1, 2, 3}) == {1: 0, 2: 1, 3: 2}
    assert sorted(table_store.keys_by_partition(table, {3})) == [("chat-b", 3), ("chat-c", 3)]
    assert table_store.partition_of(table, {0, 1, 2, 3}, "chat-a") == 2
    assert table_store.partition_of(table, {0, 1}, "chat-a") is None
    assert list(tmp_path.rglob("*chat_state-2.db"))


def test_the_persisted_offset_only_moves_forward(tmp_path: Path) -> None:
    """Recovery reads the changelog from this offset: it never goes back below a write it holds."""
    table = table_on("rocksdb", tmp_path)
    tp = TP(table.changelog_topic.get_topic_name(), 1)
    assert table.data.persisted_offset(tp) is None
    table_store.persisted(table, 1, 41)
    table_store.persisted(table, 1, 12)
    assert table.data.persisted_offset(tp) == 41
    assert table.data.persisted_offset(TP(tp.topic, 0)) is None
