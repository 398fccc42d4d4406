"""Reads event topics straight from Kafka, without a consumer group: partitions, offsets, ranges.

The rebuild replays with it; the worker measures its lag and fills holes in its offsets with it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from config.kafka import client_options
from config.settings import CommonSettings
from projections.model import Record

FETCH_TIMEOUT_MS = 500
STALL_SECONDS = 30.0
"""A range that yields nothing for this long although its end is not reached is an error."""


@dataclass(frozen=True)
class Span:
    """Offsets `start` (included) to `end` (excluded) of one partition."""

    start: int
    end: int

    @property
    def size(self) -> int:
        return max(0, self.end - self.start)


class TopicMissing(Exception):
    pass


class TopicReader:
    """Offsets come from one long-lived consumer that is never assigned; each `read` has its own."""

    def __init__(self, settings: CommonSettings) -> None:
        self.options = client_options(settings)
        self.consumer = new_consumer(self.options)
        self.admin = AIOKafkaAdminClient(**self.options)

    async def __aenter__(self) -> TopicReader:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        await self.consumer.start()
        await self.admin.start()

    async def close(self) -> None:
        await self.consumer.stop()
        await self.admin.close()

    async def partitions(self, topic: str) -> list[int]:
        [description] = await self.admin.describe_topics([topic])
        if description["error_code"] != 0:
            raise TopicMissing(f"topic {topic} does not exist (error {description['error_code']})")
        return sorted(p["partition"] for p in description["partitions"])

    async def committed(self, group_id: str) -> dict[tuple[str, int], int]:
        """The offsets consumer group `group_id` has committed, by (topic, partition)."""
        offsets = await self.admin.list_consumer_group_offsets(group_id)
        return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items() if meta.offset >= 0}

    async def end_offsets(self, topic: str, partitions: list[int]) -> dict[int, int]:
        ends = await self.consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
        return {tp.partition: offset for tp, offset in ends.items()}

    async def spans(self, topic: str) -> dict[int, Span]:
        """Every partition of `topic`, from the start of its log to its current end."""
        partitions = await self.partitions(topic)
        tps = [TopicPartition(topic, p) for p in partitions]
        starts = await self.consumer.beginning_offsets(tps)
        ends = await self.consumer.end_offsets(tps)
        return {tp.partition: Span(starts[tp], ends[tp]) for tp in tps}

    async def read(self, topic: str, spans: dict[int, Span], batch_size: int) -> AsyncGenerator[list[Record], None]:
        """The records of `spans`, in batches of at most `batch_size`, in log order per partition."""
        pending = {TopicPartition(topic, p): s for p, s in spans.items() if s.size > 0}
        if not pending:
            return
        consumer = new_consumer(self.options)
        await consumer.start()
        try:
            consumer.assign(list(pending))
            for tp, span in pending.items():
                consumer.seek(tp, span.start)
            async for batch in read_assigned(consumer, pending, batch_size):
                yield batch
        finally:
            await consumer.stop()


def new_consumer(options: dict[str, Any]) -> AIOKafkaConsumer:
    """A consumer without a group; `options` are `client_options`."""
    return AIOKafkaConsumer(**options, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest")


async def read_assigned(
    consumer: AIOKafkaConsumer, pending: dict[TopicPartition, Span], batch_size: int
) -> AsyncGenerator[list[Record], None]:
    """Fetch until the position of every partition of `pending` reaches the end of its span."""
    last_progress = time.monotonic()
    while pending:
        fetched = await consumer.getmany(*pending, timeout_ms=FETCH_TIMEOUT_MS, max_records=batch_size)
        batch = [
            Record(tp.partition, r.offset, r.value, r.key, r.timestamp)
            for tp, records in fetched.items()
            for r in records
            if r.offset < pending[tp].end
        ]
        for tp in list(pending):
            if await consumer.position(tp) >= pending[tp].end:
                del pending[tp]
        if batch:
            last_progress = time.monotonic()
            yield batch
        elif pending and time.monotonic() - last_progress > STALL_SECONDS:
            raise RuntimeError(f"no record for {STALL_SECONDS:.0f}s before the end of {pending}")
