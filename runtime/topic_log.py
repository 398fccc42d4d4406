"""Reads a whole (small) topic from its beginning to its end as it is now, without a consumer group.

For operator views of topics that stay small, such as the dead letters: every call reads it all.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import NamedTuple

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from config.kafka import client_options
from config.settings import CommonSettings

FETCH_TIMEOUT_MS = 500
STALL_SECONDS = 10.0
"""A partition that yields nothing for this long before its end is an error."""


class LogRecord(NamedTuple):
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: datetime | None


async def topic_partitions(admin: AIOKafkaAdminClient, topic: str) -> list[int]:
    """The partitions of `topic`; none when it does not exist."""
    [description] = await admin.describe_topics([topic])
    if description["error_code"] != 0:
        return []
    return sorted(p["partition"] for p in description["partitions"])


async def partitions_of(settings: CommonSettings, topic: str) -> list[int]:
    """The partitions of `topic` (its full name); none when it does not exist."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        return await topic_partitions(admin, topic)
    finally:
        await admin.close()


async def end_offsets(settings: CommonSettings, topic: str) -> dict[int, int]:
    """The offset after the last record of each partition of `topic` (its full name) as it is
    now; empty for a topic that does not exist."""
    partitions = await partitions_of(settings, topic)
    if not partitions:
        return {}
    consumer = AIOKafkaConsumer(**client_options(settings), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


async def read_topic(settings: CommonSettings, topic: str) -> list[LogRecord]:
    """Every record of `topic` (its full name, prefix included), in log order per partition,
    partitions one after the other; an empty list for a topic that does not exist."""
    partitions = await partitions_of(settings, topic)
    if not partitions:
        return []
    consumer = AIOKafkaConsumer(
        **client_options(settings), group_id=None, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        starts = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, starts[tp])
        return await read_until(consumer, {tp: ends[tp] for tp in tps if ends[tp] > starts[tp]})
    finally:
        await consumer.stop()


async def read_until(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> list[LogRecord]:
    by_partition: dict[int, list[LogRecord]] = {tp.partition: [] for tp in ends}
    pending = dict(ends)
    last_progress = time.monotonic()
    while pending:
        fetched = await consumer.getmany(*pending, timeout_ms=FETCH_TIMEOUT_MS)
        for tp, records in fetched.items():
            by_partition[tp.partition].extend(
                LogRecord(tp.partition, r.offset, r.key, r.value, record_time(r.timestamp))
                for r in records
                if r.offset < ends[tp]
            )
            last_progress = time.monotonic()
        for tp in list(pending):
            if await consumer.position(tp) >= pending[tp]:
                del pending[tp]
        if pending and time.monotonic() - last_progress > STALL_SECONDS:
            raise RuntimeError(f"no record for {STALL_SECONDS:.0f}s before the end of {sorted(pending)}")
    return [r for partition in sorted(by_partition) for r in by_partition[partition]]


def record_time(timestamp_ms: int | None) -> datetime | None:
    """A record's timestamp (ms since the epoch; -1 or None when it has none) as a UTC time."""
    if timestamp_ms is None or timestamp_ms < 0:
        return None
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC)
