"""The recent records of `content.keys`, followed in memory (docs/erasure.md).

A text is sealed with a key handed to Kafka just before the command that carries it, so whoever
opens it a moment later (the gateway that pushes a frame, the projections that store it) finds
the key among the records of the last few minutes. Following them costs one consumer per
process; asking the projections' mirror in PostgreSQL (which may not have read that far yet)
would cost a catch-up per batch, on the path a sender's ack waits on.

What the tail does not hold is not known to be missing: older keys are in the mirror, and a key
that is on its way arrives within a moment (`wait_for`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from config.kafka import client_options
from config.settings import CommonSettings
from runtime.retry import Backoff
from runtime.sealing import KeyState
from schemas.content_keys import MalformedKeyRecord, decode_key_record

log = logging.getLogger(__name__)

POLL_MS = 200
FIRST_PAUSE_S = 0.1
MAX_PAUSE_S = 5.0


class KeyTail:
    def __init__(self, consumer: AIOKafkaConsumer, topic: str, keep_s: float) -> None:
        """`consumer`: unstarted, of no group (the tail assigns every partition itself)."""
        self.consumer = consumer
        self.topic = topic
        self.keep_s = keep_s
        self.keys: dict[str, tuple[KeyState, float]] = {}
        """key id -> (its key, or None once shredded; when it was learnt)."""
        self.arrived = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.next_pruning = time.monotonic() + keep_s

    @classmethod
    def of(cls, settings: CommonSettings, topic: str, keep_s: float) -> KeyTail:
        """A tail of `topic` with a consumer of its own, logged in as `settings` say."""
        return cls(AIOKafkaConsumer(**client_options(settings), group_id=None, enable_auto_commit=False), topic, keep_s)

    async def start(self) -> None:
        await self.consumer.start()
        self.task = asyncio.create_task(self.follow(), name=f"{self.topic} tail")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.consumer.stop()

    def remember(self, key_id: str, key: bytes) -> None:
        """A key this process made (and handed to Kafka): known at once, before the tail reads it."""
        self.keys[key_id] = (key, time.monotonic())

    def known(self, key_ids: Iterable[str]) -> dict[str, KeyState]:
        """The states the tail holds of `key_ids`; an id it does not hold is absent."""
        return {key_id: held[0] for key_id in key_ids if (held := self.keys.get(key_id)) is not None}

    async def wait_for(self, key_ids: Iterable[str], timeout_s: float) -> None:
        """Until the tail holds every one of `key_ids`, or `timeout_s` passed."""
        wanted = set(key_ids)
        deadline = time.monotonic() + timeout_s
        while not wanted <= self.keys.keys() and (left := deadline - time.monotonic()) > 0:
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), left)
            except TimeoutError:
                return

    async def follow(self) -> None:
        """Follow the topic from `keep_s` ago, for as long as the process runs."""
        backoff = Backoff(FIRST_PAUSE_S, MAX_PAUSE_S)
        assigned = False
        while True:
            try:
                if not assigned:
                    assigned = await self.assign_recent()
                    if not assigned:
                        log.warning("%s has no partitions yet (python -m streams create-topics)", self.topic)
                        await asyncio.sleep(backoff.next_pause())
                        continue
                batches = await self.consumer.getmany(timeout_ms=POLL_MS, max_records=1000)
                backoff.reset()
                self.take([r for records in batches.values() for r in records])
            except KafkaError as error:
                log.warning("%s tail: %r; again", self.topic, error)
                await asyncio.sleep(backoff.next_pause())
            except Exception:
                log.exception("%s tail: unexpected error; going on", self.topic)
                await asyncio.sleep(backoff.next_pause())

    async def assign_recent(self) -> bool:
        """Read every partition from `keep_s` ago; False while the topic has none. A partition
        with nothing that recent is read from its end as it was before that question, so that
        a record written meanwhile is not skipped."""
        partitions = self.consumer.partitions_for_topic(self.topic)
        if not partitions:
            await self.consumer._client.force_metadata_update()  # a topic created after the start
            partitions = self.consumer.partitions_for_topic(self.topic) or set()
        if not partitions:
            return False
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        self.consumer.assign(tps)
        since = int((time.time() - self.keep_s) * 1000)
        ends = await self.consumer.end_offsets(tps)
        found = await self.consumer.offsets_for_times(dict.fromkeys(tps, since))
        for tp in tps:
            at = found.get(tp)
            self.consumer.seek(tp, ends[tp] if at is None else at.offset)
        return True

    def take(self, records: list[Any]) -> None:
        now = time.monotonic()
        for record in records:
            try:
                key_id, content_key = decode_key_record(record.key, record.value)
            except MalformedKeyRecord:
                continue
            self.keys[key_id] = (content_key.key_bytes if content_key else None, now)
        if records:
            self.arrived.set()
        self.forget_old(now)

    def forget_old(self, now: float) -> None:
        """Every `keep_s`, the keys learnt longer ago than that."""
        if now >= self.next_pruning:
            self.next_pruning = now + self.keep_s
            self.keys = {k: v for k, v in self.keys.items() if now - v[1] < self.keep_s}
