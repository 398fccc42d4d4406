"""The projections worker's side of the dead letters: it sends those of the records it skips, and
applies the ones an operator asks to replay.

Sending: `ProducerSink` is what `apply_records` gets from the live worker; it produces one
`DeadLetter` per skipped record through the worker's producer and waits for the broker, inside
the batch's transaction, so the offsets that pass a skipped record never commit before its dead
letter is durable. The rebuild sends none: the live worker did, for the same records and ids.

Replaying: `python -m streams dead-letters replay` writes a `ReplayRequest` on `dead.letters`;
the worker's `dead_letter_replays` agent applies the letter's record with the projection's
current code, once: the tracking row of `dead_letter_replays` (migration 0003) is written in the
same transaction as the rows, so a second request (or the same one redelivered) changes nothing.
It answers with a `ReplayOutcome` on the same key. A request older than `REQUEST_TTL` is left
alone: the command that asked gave up waiting, and said so.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import faust
from aiokafka.errors import KafkaError
from faust.exceptions import ProducerSendError

from projections.apply import Conn, Skipped, to_params
from projections.model import Projection, Record
from projections.sealed_texts import OPENER
from runtime.retry import retrying
from schemas.dead_letters import DeadLetter, ReplayOutcome, ReplayRequest, decode_letter, encode_letter, key_of

log = logging.getLogger(__name__)

SEND_ATTEMPTS = 5
FIRST_SEND_PAUSE_S = 1.0
"""As the agents' appends: about 7.5 s of waiting on average before the batch fails (and the worker stops)."""
SEND_TIMEOUT_S = 15.0
"""One attempt's bound: Faust's producer waits up to 20 minutes for a topic's metadata (a topic not created
yet), and the batch's transaction stays open meanwhile."""
RETRY_ON = (KafkaError, ProducerSendError, TimeoutError)
REQUEST_TTL = timedelta(minutes=5)

CLAIM = """
INSERT INTO dead_letter_replays (id, projection, replayed_at) VALUES ($1, $2, $3)
ON CONFLICT (id) DO NOTHING
RETURNING id
"""
CLAIMED_AT = "SELECT replayed_at FROM dead_letter_replays WHERE id = $1"


def letter_of(projection: str, topic: str, skipped: Skipped, now: datetime) -> DeadLetter:
    record = skipped.record
    stamp = record.timestamp_ms
    return DeadLetter(
        consumer=projection,
        reason=skipped.reason,
        detail=skipped.detail,
        topic=topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value,
        occurred_at=datetime.fromtimestamp(stamp / 1000, UTC) if stamp is not None and stamp >= 0 else None,
        dead_at=now,
    )


async def produce(app: faust.App, topic: str, records: Sequence[DeadLetter | ReplayOutcome]) -> None:
    """Send `records` to `topic` (the dead letters) and wait until the broker has them, with retries."""

    async def send_all() -> None:
        async with asyncio.timeout(SEND_TIMEOUT_S):
            futures = [
                await app.producer.send(topic, key_of(record), encode_letter(record), None, None, None)
                for record in records
            ]
            await asyncio.gather(*futures)

    await retrying(
        send_all,
        what="sending dead letters",
        attempts=SEND_ATTEMPTS,
        first_pause_s=FIRST_SEND_PAUSE_S,
        retry_on=RETRY_ON,
    )


class ProducerSink:
    """The live worker's `DeadLetterSink`: `GaveUp` when Kafka keeps refusing (the worker stops)."""

    def __init__(self, app: faust.App, topic: str) -> None:
        self.app = app
        self.topic = topic

    async def send(self, projection: str, topic: str, skipped: Sequence[Skipped]) -> None:
        now = datetime.now(UTC)
        await produce(self.app, self.topic, [letter_of(projection, topic, s, now) for s in skipped])


async def apply_replay(conn: Conn, projection: Projection, letter: DeadLetter, now: datetime) -> ReplayOutcome:
    """Apply the letter's record to `projection` with the current code, unless it was replayed
    already; the outcome to write back. The checks are the worker's own (`to_params`)."""
    outcome = to_params(projection, Record(letter.partition, letter.offset, letter.value, letter.key))
    if isinstance(outcome, Skipped):
        return ReplayOutcome(
            kind="replay_failed", id=letter.id, at=now, detail=f"still skipped: {outcome.reason}: {outcome.detail}"
        )
    async with conn.transaction():
        claimed = await conn.fetchval(CLAIM, letter.id, projection.name, now)
        if claimed is None:
            earlier = await conn.fetchval(CLAIMED_AT, letter.id)
            detail = f"applied to the {projection.name} projection already, at {earlier.isoformat()}; nothing done"
            return ReplayOutcome(kind="replayed", id=letter.id, at=now, detail=detail)
        [params] = await OPENER.open(conn, [outcome], projection.sealed_params)
        await conn.execute(projection.statement, *params)
    return ReplayOutcome(kind="replayed", id=letter.id, at=now, detail=f"applied to the {projection.name} projection")


def replay_request(value: bytes | None, projections: dict[str, Projection], now: datetime) -> ReplayRequest | None:
    """The request in `value` if this worker should answer it: one for its projections, and recent."""
    try:
        record = decode_letter(value or b"")
    except ValueError:
        return None
    if not isinstance(record, ReplayRequest) or record.letter.consumer not in projections:
        return None
    if now - record.requested_at > REQUEST_TTL:
        log.warning("replay request of %s left alone: older than %s", record.letter.id, REQUEST_TTL)
        return None
    return record
