"""What the projection agents of one worker share: a pool, retries, holes, the lag, the versions.

Everything is made on first use, inside the worker's event loop. A rebuild runs beside the worker
(`projections.rebuild`): at its swap it holds the projection's offsets rows, and the agent's next
batch waits for them a moment. A projection is applied only while the live read model is the
version this code writes (`projections.versions.VersionGate`); otherwise its agent writes nothing
and lets its batches go (the rebuild that brings that version covers them; see there).

`projection_offsets`, not the consumer group, says what was applied. Faust acks the batch of an
agent stopped in the middle of it (a shutdown, a rebalance) as the agent unwinds, and may commit
it: the records would then never come again. So a batch whose first record lies after a
partition's `next_offset` is applied only after the records in between, read straight from
Kafka, and the watch timer fills the same holes where no new record shows them.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import aclosing
from dataclasses import dataclass
from functools import partial
from typing import Any

import asyncpg
from aiokafka.errors import KafkaError

from config.settings import CommonSettings
from projections.apply import BatchOutcome, DeadLetterSink, OffsetGap, VersionChanged, advance_offsets, apply_records
from projections.catalogue import PROJECTIONS
from projections.key_mirror import catching_up
from projections.metrics import LAG
from projections.model import Projection, Record
from projections.retry import with_retries
from projections.sealed_texts import OPENER
from projections.topic_reader import Span, TopicMissing, TopicReader
from projections.versions import VersionGate
from runtime.key_tail import KeyTail
from runtime.retry import Backoff
from schemas.topics import CONTENT_KEYS

log = logging.getLogger(__name__)

POOL_SIZE = 4
"""One connection per projection agent (each runs with concurrency 1), one for the watch timer."""
FILL_BATCH = 500
KEYS_KEEP_S = 60.0
"""How long the tail of `content.keys` keeps a key: far above a projection's usual lag; an
older event's key is in the mirror."""
KEYS_FIRST_PAUSE_S = 0.5


@dataclass(frozen=True)
class PartitionLag:
    end_offset: int
    next_offset: int

    @property
    def lag(self) -> int:
        return max(0, self.end_offset - self.next_offset)


def lag_json(topics: dict[str, str], lags: dict[str, dict[int, PartitionLag]]) -> dict[str, Any]:
    """The JSON of `/projections/lag`: per projection, its topic, total lag and partitions."""
    projections = {
        name: {
            "topic": topics[name],
            "lag": sum(p.lag for p in partitions.values()),
            "partitions": {
                str(n): {"end_offset": p.end_offset, "next_offset": p.next_offset, "lag": p.lag}
                for n, p in sorted(partitions.items())
            },
        }
        for name, partitions in lags.items()
    }
    return {"lag": sum(p["lag"] for p in projections.values()), "projections": projections}


class Runtime:
    def __init__(self, settings: CommonSettings) -> None:
        self.settings = settings
        self._pool: asyncpg.Pool | None = None
        self._reader: TopicReader | None = None
        self._making = asyncio.Lock()
        self.versions = VersionGate(settings.database_url, PROJECTIONS.values())
        self._passed: dict[str, dict[int, int]] = {}
        """Per projection and partition, the offset after the last record let go (`pass_over`)."""
        self.dead_letters: DeadLetterSink | None = None
        """Where the records the agents skip go; set by the worker's app (`projections.dead_letters`)."""
        OPENER.follow(catching_up(self.reader, settings.topic(CONTENT_KEYS.name), settings.database_url))

    def topic(self, projection: Projection) -> str:
        return self.settings.topic(projection.topic.name)

    async def pool(self) -> asyncpg.Pool:
        async with self._making:
            if self._pool is None:
                url = self.settings.database_url
                self._pool = await asyncpg.create_pool(url, min_size=1, max_size=POOL_SIZE)
            return self._pool

    async def writer_pool(self) -> asyncpg.Pool:
        """The pool the agents write with."""
        return await self.pool()

    async def reader(self) -> TopicReader:
        async with self._making:
            if self._reader is None:
                reader = TopicReader(self.settings)
                await reader.start()
                self._reader = reader
            return self._reader

    async def close(self) -> None:
        await self.close_reader()
        if self._pool is not None:
            await self._pool.close()
        await self.versions.close()

    async def close_reader(self) -> None:
        """Close the Kafka clients of the watch and the key tail; the database connections end with
        the process, after the agents (an agent may still be finishing a batch when the app stops)."""
        reader, self._reader = self._reader, None
        if reader is not None:
            await reader.close()
        tail, OPENER.recent = OPENER.recent, None
        if tail is not None:
            await tail.stop()

    async def follow_recent_keys(self) -> None:
        """Start the tail of `content.keys` the agents open texts with (`projections.sealed_texts`),
        trying again while the broker cannot be reached: meanwhile texts open from the mirror."""
        backoff = Backoff(KEYS_FIRST_PAUSE_S)
        while True:
            tail = KeyTail.of(self.settings, self.settings.topic(CONTENT_KEYS.name), KEYS_KEEP_S)
            try:
                await tail.start()
            except KafkaError as error:
                log.warning("cannot start the tail of content.keys: %r; again", error)
                await tail.stop()
                await asyncio.sleep(backoff.next_pause())
                continue
            OPENER.recent = tail
            return

    async def follow_keys(self) -> None:
        """Apply what `content.keys` holds beyond the mirror (keys, and the tombstones that shred them)."""
        if OPENER.catch_up is not None:
            await OPENER.catch_up()

    async def apply(self, projection: Projection, records: list[Record]) -> BatchOutcome:
        """Apply a batch of the live stream, filling first any hole before it; `GaveUp` if the
        database keeps failing. Nothing is written while the live read model is another version than
        this code's (`projections.versions`: a rebuild brings the new one)."""
        topic = self.topic(projection)
        while True:
            if not await self.versions.open(projection):
                self.pass_over(projection, records)
                return BatchOutcome()
            await self.fill_passed(projection)
            try:
                return await with_retries(
                    lambda: self._apply_once(projection, topic, records, contiguous=True),
                    f"{projection.name} projection",
                )
            except OffsetGap as gap:
                log.warning("%s projection: records missing on %s, reading them again: %s", projection.name, topic, gap)
                await self.fill(projection, topic, gap)
            except VersionChanged as changed:
                log.warning(
                    "%s projection: writing nothing until the version is this code's: %s", projection.name, changed
                )
                self.versions.shut(projection)

    def pass_over(self, projection: Projection, records: list[Record]) -> None:
        """Let records go unwritten (another version is live), noting where they end per partition."""
        if projection.name not in self._passed:
            log.warning(
                "%s projection: another version of its read model is live: letting records go unwritten "
                "(the rebuild that swaps in this code's version covers them)",
                projection.name,
            )
        passed = self._passed.setdefault(projection.name, {})
        for record in records:
            passed[record.partition] = max(passed.get(record.partition, 0), record.offset + 1)

    async def fill_passed(self, projection: Projection) -> None:
        """Once the version is ours again: apply the records let go that the swap's offsets did not pass
        (those that came between the swap and this worker's seeing it), read again from Kafka."""
        passed = self._passed.pop(projection.name, None)
        if not passed:
            return
        topic = self.topic(projection)
        stored = await self.stored_offsets()
        try:
            for partition, end in sorted(passed.items()):
                expected = stored.get((projection.name, topic, partition), 0)
                if end > expected:
                    log.warning(
                        "%s projection: applying %s[%d] %d..%d, let go before",
                        projection.name,
                        topic,
                        partition,
                        expected,
                        end,
                    )
                    await self.fill(projection, topic, OffsetGap(partition, expected, end))
        except BaseException:
            self._passed[projection.name] = {**passed, **self._passed.get(projection.name, {})}
            raise

    async def _apply_once(
        self, projection: Projection, topic: str, records: list[Record], contiguous: bool
    ) -> BatchOutcome:
        pool = await self.writer_pool()
        async with pool.acquire() as conn:
            return await apply_records(
                conn,
                projection,
                topic,
                records,
                contiguous=contiguous,
                dead_letters=self.dead_letters,
                version=projection.version,
            )

    async def fill(self, projection: Projection, topic: str, gap: OffsetGap) -> None:
        """Apply the records of the hole straight from Kafka, then mark the hole done."""
        spans = {gap.partition: Span(gap.expected, gap.first)}
        async with TopicReader(self.settings) as reader, aclosing(reader.read(topic, spans, FILL_BATCH)) as batches:
            async for batch in batches:
                await with_retries(
                    partial(self._apply_once, projection, topic, batch, contiguous=False),
                    f"{projection.name} projection (hole)",
                )
        await with_retries(lambda: self._advance(projection, topic, gap.partition, gap.first), "advance")

    async def _advance(self, projection: Projection, topic: str, partition: int, offset: int) -> None:
        pool = await self.writer_pool()
        async with pool.acquire() as conn, conn.transaction():
            await advance_offsets(conn, projection.name, topic, {partition: offset})

    async def repair(self, group_id: str, assigned: set[tuple[str, int]]) -> None:
        """Fill the holes behind the offsets `group_id` committed, on the partitions in `assigned`, and
        the records let go while another version was live (no new record may come to show them)."""
        for each in PROJECTIONS.values():
            if self.versions.is_open(each):
                await self.fill_passed(each)
        reader = await self.reader()
        committed = await reader.committed(group_id)
        stored = await self.stored_offsets()
        by_topic = {self.topic(p): p for p in PROJECTIONS.values()}
        for (topic, partition), offset in sorted(committed.items()):
            projection = by_topic.get(topic)
            if projection is None or (topic, partition) not in assigned or self.versions.is_closed(projection):
                continue
            expected = stored.get((projection.name, topic, partition), 0)
            if offset > expected:
                log.warning(
                    "%s projection: %s[%d] committed up to %d but applied up to %d: filling the hole",
                    projection.name,
                    topic,
                    partition,
                    offset,
                    expected,
                )
                try:
                    await self.fill(projection, topic, OffsetGap(partition, expected, offset))
                except VersionChanged as changed:  # its agent waits for the version; the hole waits with it
                    log.warning("%s projection: hole left for now: %s", projection.name, changed)
                    self.versions.shut(projection)

    async def stored_offsets(self) -> dict[tuple[str, str, int], int]:
        pool = await self.pool()
        rows = await pool.fetch("SELECT projection, topic, partition, next_offset FROM projection_offsets")
        return {(r["projection"], r["topic"], r["partition"]): r["next_offset"] for r in rows}

    async def lags(self) -> dict[str, dict[int, PartitionLag]]:
        """Per projection and partition: the topic's end offset and the projection's next_offset."""
        reader = await self.reader()
        stored = await self.stored_offsets()
        result: dict[str, dict[int, PartitionLag]] = {}
        for name, projection in PROJECTIONS.items():
            topic = self.topic(projection)
            try:
                ends = await reader.end_offsets(topic, await reader.partitions(topic))
            except TopicMissing:
                ends = {}
            result[name] = {p: PartitionLag(end, stored.get((name, topic, p), 0)) for p, end in ends.items()}
        return result

    async def lag_report(self) -> dict[str, Any]:
        """The lag as JSON, also set on the `projection_lag_events` gauge."""
        lags = await self.lags()
        for name, partitions in lags.items():
            for partition, lag in partitions.items():
                LAG.labels(name, str(partition)).set(lag.lag)
        return lag_json({name: self.topic(p) for name, p in PROJECTIONS.items()}, lags)
