"""Topics and lag, read from Kafka when the page is asked for: every topic of `schemas.topics` with
its partitions' end offsets, the system's consumer groups' committed offsets and lag, and the
projections' lag in events (`projections.runtime.Runtime.lags`, as `/projections/lag`) and in
seconds (record times read back from Kafka)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from config.kafka import client_options
from config.settings import CommonSettings
from schemas import topics
from schemas.console import (
    CONSUMER_GROUPS,
    GroupOffset,
    ProjectionLag,
    ProjectionPartitionLag,
    TopicPartitionView,
    TopicView,
)

if TYPE_CHECKING:
    from projections.runtime import PartitionLag

FETCH_TIMEOUT_S = 3.0
UNKNOWN_TOPIC = 3


def lag_seconds(end: int, next_offset: int, newest_ms: int | None, applied_ms: int | None) -> float | None:
    """Event time of the newest record minus that of the last applied one (0 when caught up)."""
    if next_offset >= end:
        return 0.0
    if newest_ms is None or applied_ms is None:
        return None
    return max(0.0, (newest_ms - applied_ms) / 1000)


def reference_offset(next_offset: int) -> int:
    """The last applied record, or the first of the log when none was applied yet (the lag is then
    at least the span of the whole log)."""
    return max(next_offset - 1, 0)


def group_offsets(
    partition: int, topic: str, end: int, committed: Mapping[str, Mapping[tuple[str, int], int]]
) -> list[GroupOffset]:
    rows = []
    for group, offsets in committed.items():
        at = offsets.get((topic, partition))
        rows.append(GroupOffset(group=group, committed=at, lag=None if at is None else max(0, end - at)))
    return rows


def topic_view(
    spec: topics.TopicSpec,
    name: str,
    partitions: list[int] | None,
    ends: Mapping[int, int],
    committed: Mapping[str, Mapping[tuple[str, int], int]],
) -> TopicView:
    return TopicView(
        name=name,
        doc=spec.doc,
        key=spec.key,
        exists=partitions is not None,
        partitions=[
            TopicPartitionView(
                partition=p, end_offset=ends.get(p, 0), groups=group_offsets(p, name, ends.get(p, 0), committed)
            )
            for p in partitions or []
        ],
    )


def new_consumer(settings: CommonSettings) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(**client_options(settings), group_id=None, enable_auto_commit=False)


async def describe(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, list[int] | None]:
    found: dict[str, list[int] | None] = {}
    for description in await admin.describe_topics(names):
        ok = description["error_code"] == 0
        found[description["topic"]] = sorted(p["partition"] for p in description["partitions"]) if ok else None
    return found


async def committed_offsets(admin: AIOKafkaAdminClient, group: str) -> dict[tuple[str, int], int]:
    offsets: dict[Any, Any] = await admin.list_consumer_group_offsets(group)
    return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


async def read_topics(settings: CommonSettings) -> tuple[list[str], list[TopicView]]:
    """(the consumer groups shown, every topic of the catalogue)."""
    names = {settings.topic(spec.name): spec for spec in topics.ALL}
    groups = [settings.topic(g) for g in CONSUMER_GROUPS]
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        described = await describe(admin, list(names))
        committed = {g: await committed_offsets(admin, g) for g in groups}
    finally:
        await admin.close()
    ends = await end_offsets(settings, [name for name, parts in described.items() if parts is not None])
    views = [topic_view(spec, name, described.get(name), ends.get(name, {}), committed) for name, spec in names.items()]
    return groups, views


async def record_times(
    consumer: AIOKafkaConsumer, wanted: set[tuple[str, int, int]]
) -> dict[tuple[str, int, int], int]:
    """The timestamp (ms) of the first record at or after each (topic, partition, offset)."""
    found: dict[tuple[str, int, int], int] = {}
    for topic, partition, offset in sorted(wanted):
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        try:
            records = await asyncio.wait_for(consumer.getmany(tp, timeout_ms=1000, max_records=1), FETCH_TIMEOUT_S)
        except TimeoutError:
            continue
        for record in records.get(tp, []):
            found[(topic, partition, offset)] = record.timestamp
    return found


def projection_lag(
    name: str, topic: str, partitions: Mapping[int, PartitionLag], times: Mapping[tuple[str, int, int], int]
) -> ProjectionLag:
    rows = [
        ProjectionPartitionLag(
            partition=p,
            end_offset=lag.end_offset,
            next_offset=lag.next_offset,
            lag_events=lag.lag,
            lag_seconds=lag_seconds(
                lag.end_offset,
                lag.next_offset,
                times.get((topic, p, lag.end_offset - 1)),
                times.get((topic, p, reference_offset(lag.next_offset))),
            ),
        )
        for p, lag in sorted(partitions.items())
    ]
    return ProjectionLag(projection=name, topic=topic, lag_events=sum(r.lag_events for r in rows), partitions=rows)


async def read_projection_lags(settings: CommonSettings) -> list[ProjectionLag]:
    """Imported here, not with the module: a streams worker loads the projections' code only when
    an operator asks for their lag."""
    from projections.catalogue import PROJECTIONS
    from projections.runtime import Runtime

    runtime = Runtime(settings)
    try:
        lags = await runtime.lags()
    finally:
        await runtime.close()
    topic_of = {name: settings.topic(p.topic.name) for name, p in PROJECTIONS.items()}
    wanted = {
        (topic_of[name], p, offset)
        for name, partitions in lags.items()
        for p, lag in partitions.items()
        if lag.lag > 0
        for offset in (lag.end_offset - 1, reference_offset(lag.next_offset))
    }
    times: dict[tuple[str, int, int], int] = {}
    if wanted:
        consumer = new_consumer(settings)
        await consumer.start()
        try:
            times = await record_times(consumer, wanted)
        finally:
            await consumer.stop()
    return [projection_lag(name, topic_of[name], partitions, times) for name, partitions in lags.items()]


async def end_offsets(settings: CommonSettings, names: list[str]) -> dict[str, dict[int, int]]:
    """Topic -> partition -> end offset, for the topics of `names` that exist."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    consumer = new_consumer(settings)
    await admin.start()
    await consumer.start()
    try:
        described = await describe(admin, names)
        tps = [TopicPartition(t, p) for t, parts in described.items() for p in parts or []]
        ends = await consumer.end_offsets(tps) if tps else {}
    finally:
        await consumer.stop()
        await admin.close()
    found: dict[str, dict[int, int]] = {}
    for tp, end in ends.items():
        found.setdefault(tp.topic, {})[tp.partition] = end
    return found
