"""What the agents write to Kafka: events that must be durable before anyone is told, and the
replies and deliveries that follow them. Also the counters every agent shares."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import faust
from aiokafka.structs import RecordMetadata
from prometheus_client import Counter

from schemas import codec
from schemas.commands import Command, Position, Reply
from schemas.events import Event, encode_event

log = logging.getLogger(__name__)

BAD_RECORDS = Counter(
    "streams_bad_records_total", "Records of command topics that were skipped", ["topic", "reason"]
)
COMMANDS = Counter("streams_commands_total", "Commands decided", ["kind", "outcome"])


@dataclass(frozen=True)
class PendingEvent:
    topic: str
    key: bytes
    partition: int | None
    event: Event


async def produce_durable(app: faust.App, pending: list[PendingEvent]) -> list[RecordMetadata]:
    """Send every event and wait until the broker has them all (acks=all): one round trip a batch."""
    futures = [
        await app.producer.send(p.topic, p.key, encode_event(p.event), p.partition, None, None)
        for p in pending
    ]
    return list(await asyncio.gather(*futures))


async def send_soon(app: faust.App, topic: str, key: bytes, value: bytes, partition: int | None = None) -> None:
    """Queue a record without waiting for it; the agent flushes the producer once per batch."""
    await app.producer.send(topic, key, value, partition, None, None)


async def send_reply(app: faust.App, command: Command, reply: Reply) -> None:
    if command.reply_to:
        await send_soon(app, command.reply_to, command.correlation_id.encode(), codec.dumps(reply), 0)


def reply_for(
    command: Command, ok: bool, *, code: str | None = None, message: str | None = None,
    duplicate: bool = False, result: dict[str, Any] | None = None,
    metadata: list[RecordMetadata] | None = None,
) -> Reply:
    COMMANDS.labels(command.body.kind, "accepted" if ok else code or "refused").inc()
    positions = [Position(topic=m.topic, partition=m.partition, offset=m.offset) for m in metadata or []]
    return Reply(
        correlation_id=command.correlation_id, ok=ok, code=code, message=message,
        duplicate=duplicate, result=result or {}, positions=positions,
    )


def skip_bad_record(topic: str, partition: int, offset: int, reason: str, error: Exception) -> None:
    BAD_RECORDS.labels(topic, reason).inc()
    log.warning("skipped record %s[%d]@%d (%s): %s", topic, partition, offset, reason, str(error)[:300])
