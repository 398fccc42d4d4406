"""Follows a topic from given offsets with one consumer (no group) and hands out its records up to
the offsets asked for: the rebuild's catch-up and the tail it applies while the live worker waits.

Records fetched past the offsets asked for are kept for the next ask, and `prefetch` takes what
the broker already has without waiting: so the tail asked for during the swap is mostly in memory
already, and the live worker's pause lasts a few milliseconds rather than a fetch.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from projections.model import Record
from projections.topic_reader import new_consumer

FETCH_TIMEOUT_MS = 200
MAX_RECORDS = 2000
STALL_SECONDS = 30.0


class Follower:
    def __init__(self, options: dict[str, Any], topic: str, starts: dict[int, int]) -> None:
        """`options` are `config.kafka.client_options`; `starts` the first offset to read per partition."""
        self.topic = topic
        self.consumer: AIOKafkaConsumer = new_consumer(options)
        self.starts = dict(starts)
        self.buffered: dict[int, deque[Record]] = {p: deque() for p in starts}
        self.fetched_to = dict(starts)
        """Per partition, the offset the next record fetched will have (or a later one)."""

    def tp(self, partition: int) -> TopicPartition:
        return TopicPartition(self.topic, partition)

    async def start(self) -> None:
        await self.consumer.start()
        self.consumer.assign([self.tp(p) for p in self.starts])
        for partition, offset in self.starts.items():
            self.consumer.seek(self.tp(partition), offset)

    async def close(self) -> None:
        await self.consumer.stop()

    async def until(self, targets: dict[int, int]) -> list[Record]:
        """Every record not handed out yet below `targets[partition]`, in log order per partition."""
        last_progress = time.monotonic()
        while short := [p for p, end in targets.items() if self.fetched_to.get(p, end) < end]:
            if await self._fetch(short, FETCH_TIMEOUT_MS):
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > STALL_SECONDS:
                raise RuntimeError(f"{self.topic}: no record for {STALL_SECONDS:.0f}s before offsets {targets}")
        return self._take(targets)

    async def prefetch(self) -> None:
        """Fetch what the broker has at hand, without waiting for more."""
        await self._fetch(list(self.starts), 0)

    async def _fetch(self, partitions: list[int], timeout_ms: int) -> int:
        tps = [self.tp(p) for p in partitions]
        fetched = await self.consumer.getmany(*tps, timeout_ms=timeout_ms, max_records=MAX_RECORDS)
        count = 0
        for tp, records in fetched.items():
            self.buffered[tp.partition].extend(Record(tp.partition, r.offset, r.value) for r in records)
            count += len(records)
        for tp in tps:
            self.fetched_to[tp.partition] = max(self.fetched_to[tp.partition], await self.consumer.position(tp))
        return count

    def _take(self, targets: dict[int, int]) -> list[Record]:
        taken: list[Record] = []
        for partition, end in targets.items():
            queue = self.buffered.get(partition)
            while queue and queue[0].offset < end:
                taken.append(queue.popleft())
        return taken
