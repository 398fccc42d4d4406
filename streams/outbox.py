"""What the agents write to Kafka: events that must be durable before anyone is told, and the
replies and deliveries that follow them; the dead letters of the records they skip. Also the
counters every agent shares."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import faust
from faust.types import TableT
from faust.types.tuples import RecordMetadata
from prometheus_client import Counter

from runtime import table_store
from schemas import codec
from schemas.commands import Command, Position, Reply
from schemas.content_keys import tombstone
from schemas.dead_letters import DeadLetter, encode_letter, key_of
from schemas.events import Event, encode_event
from streams.decision import Decision

log = logging.getLogger(__name__)

BAD_RECORDS = Counter("streams_bad_records_total", "Records of command topics that were skipped", ["topic", "reason"])
COMMANDS = Counter("streams_commands_total", "Commands decided", ["kind", "outcome"])


@dataclass(frozen=True)
class PendingEvent:
    topic: str
    key: bytes
    partition: int | None
    event: Event


async def produce_durable(
    app: faust.App,
    pending: list[PendingEvent],
    keys_topic: str = "",
    shredded: Sequence[str] = (),
    records: Sequence[tuple[str, bytes, bytes | None]] = (),
) -> list[RecordMetadata]:
    """Send every event, the tombstones of the data keys the events shred, and the other records
    decided with them (topic, key, value: `user.credentials`), and wait until the broker has them
    all (acks=all): one round trip a batch. Where the events landed, then where `records` did."""
    futures = [await app.producer.send(p.topic, p.key, encode_event(p.event), p.partition, None, None) for p in pending]
    extra = [await app.producer.send(topic, key, value, None, None, None) for topic, key, value in records]
    erasures = [await app.producer.send(keys_topic, *tombstone(key_id), None, None, None) for key_id in shredded]
    landed = await asyncio.gather(*futures, *extra, *erasures)
    return list(landed[: len(futures) + len(extra)])


class Outbox:
    """Records sent after a batch's events are durable (table changelogs, replies, deliveries),
    awaited together at the end of the batch.

    Faust's own `send_soon` and `producer.flush()` are avoided: its buffer's flush can miss the
    wake-up of the last record and wait forever (seen here on fresh workers), and table writes
    must name the chat's partition, not the current event's. Changelog records are serialized
    the way the table's changelog topic does it and handed straight to the producer: Faust's own
    `Topic.send` path costs several objects per record, and a message writes a few of them.
    """

    def __init__(self, app: faust.App) -> None:
        self.app = app
        self.futures: list[Awaitable[RecordMetadata]] = []
        self.changelog_writes: list[tuple[int, TableT[str, Any]]] = []
        """(index in `futures`, table) of each changelog record: its offset is reported to the
        table's store once durable (`runtime.table_store.persisted`)."""

    async def send(self, topic: str, key: bytes, value: bytes, partition: int | None = None) -> None:
        self.futures.append(await self.app.producer.send(topic, key, value, partition, None, None))

    async def shred(self, keys_topic: str, key_ids: Sequence[str]) -> None:
        """Tombstone each of `key_ids` in `content.keys` (docs/erasure.md)."""
        for key_id in key_ids:
            key, value = tombstone(key_id)
            self.futures.append(await self.app.producer.send(keys_topic, key, value, None, None, None))

    async def reply(self, command: Command, reply: Reply) -> None:
        if command.reply_to:
            await self.send(command.reply_to, command.correlation_id.encode(), codec.dumps(reply), 0)

    async def put(self, table: TableT[str, Any], partition: int, key: str, value: Any) -> None:
        """Set a table key in `partition` (the key's chat or name) and write its changelog there."""
        changelog = table.changelog_topic
        # `TableT` does not declare the serializers every `Table` has.
        key_bytes, _ = changelog.prepare_key(key, getattr(table, "key_serializer"))  # noqa: B009
        value_bytes, _ = changelog.prepare_value(value, getattr(table, "value_serializer"))  # noqa: B009
        table_store.put(table, partition, key, value, key_bytes, value_bytes)
        self.changelog_writes.append((len(self.futures), table))
        await self.send(changelog.get_topic_name(), key_bytes, value_bytes, partition)

    def wait_in_background(self) -> None:
        """`wait` without holding up the caller: the changelog offsets are reported to the tables'
        stores once durable; a record that is lost only makes the next recovery read more."""
        waiting = asyncio.ensure_future(self.wait())
        IN_BACKGROUND.add(waiting)
        waiting.add_done_callback(settled)

    async def wait(self) -> None:
        """Until the broker has every record sent so far."""
        futures, self.futures = self.futures, []
        writes, self.changelog_writes = self.changelog_writes, []
        landed = await asyncio.gather(*futures)
        durable: dict[tuple[str, int], tuple[TableT[str, Any], int]] = {}
        for index, table in writes:
            metadata = landed[index]
            where = (table.name, metadata.partition)
            if where not in durable or durable[where][1] < metadata.offset:
                durable[where] = (table, metadata.offset)
        for (_, partition), (table, offset) in durable.items():
            table_store.persisted(table, partition, offset)


IN_BACKGROUND: set[asyncio.Future[None]] = set()
"""Outboxes waited for in the background, held until done (the loop keeps only weak references)."""


def settled(waiting: asyncio.Future[None]) -> None:
    IN_BACKGROUND.discard(waiting)
    if not waiting.cancelled() and waiting.exception() is not None:
        log.warning("a table checkpoint write failed (the next catch-up replays more): %s", waiting.exception())


def reply_for(command: Command, decision: Decision, metadata: list[RecordMetadata]) -> Reply:
    """The answer to `command`, with where each of its events landed."""
    COMMANDS.labels(command.body.kind, "accepted" if decision.ok else decision.code or "refused").inc()
    positions = [Position(topic=m.topic, partition=m.partition, offset=m.offset) for m in metadata]
    return Reply(
        correlation_id=command.correlation_id,
        ok=decision.ok,
        code=decision.code,
        message=decision.message,
        duplicate=decision.duplicate,
        result=decision.result,
        positions=positions,
    )


@dataclass(frozen=True)
class SourceRecord:
    """A record as read from Kafka, what a dead letter copies of it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    occurred_at: datetime | None


def skip_bad_record(consumer: str, record: SourceRecord, reason: str, error: Exception) -> DeadLetter:
    """Count and log a record `consumer` skips, and the dead letter to send for it."""
    BAD_RECORDS.labels(record.topic, reason).inc()
    detail = " ".join(str(error).split())[:300] or type(error).__name__
    log.warning("skipped record %s[%d]@%d (%s): %s", record.topic, record.partition, record.offset, reason, detail)
    return DeadLetter(
        consumer=consumer,
        reason=reason,
        detail=detail,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value,
        occurred_at=record.occurred_at,
        dead_at=datetime.now(UTC),
    )


async def send_dead_letters(app: faust.App, topic: str, letters: list[DeadLetter]) -> None:
    """Send `letters` to `topic` (the dead letters) and wait until the broker has them all."""
    futures = [
        await app.producer.send(topic, key_of(letter), encode_letter(letter), None, None, None) for letter in letters
    ]
    await asyncio.gather(*futures)
