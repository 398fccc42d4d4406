"""The projections worker's Faust app: `python -m projections worker` runs it.

One agent per projection reads its event topic as raw bytes (a bad record must reach the
projection, which counts and skips it, rather than fail in Faust's deserializer), with
concurrency 1 and batches from `runtime.stream_batches`; the records a projection skips go to the
dead letters, and a replay asked for on that topic is answered here (`projections.dead_letters`).
Besides Faust's views and `/healthz`, `/metrics`, the worker serves its lag at `/projections/lag`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn

import faust
from faust.types import EventT, StreamT
from faust.types.tuples import Message
from faust.web import Request, Response, View
from mode.types.signals import BaseSignalT

from config.logs import log_scope
from config.settings import WorkerSettings, load
from projections.catalogue import PROJECTIONS
from projections.dead_letters import ProducerSink, apply_replay, produce, replay_request
from projections.model import Projection, Record
from projections.retry import with_retries
from projections.runtime import Runtime
from runtime.faust_app import make_app
from runtime.stream_batches import batches
from schemas.content_keys import ROLL_KEY_ID
from schemas.content_keys import tombstone as key_tombstone
from schemas.credentials import ROLL_USER_ID
from schemas.credentials import tombstone as credential_tombstone
from schemas.dead_letters import DeadLetter, ReplayOutcome
from schemas.topics import CONTENT_KEYS, DEAD_LETTERS, USER_CREDENTIALS

log = logging.getLogger(__name__)

BATCH_MAX = 500
BATCH_WITHIN_S = 0.01
"""While events keep coming, a batch is applied 10 ms after the last one (or at 500 records): a
short wait, since the gateway waits on the NOTIFY that follows; an event after a quiet 10 ms is
applied at once (`runtime.stream_batches`)."""
WATCH_INTERVAL = 5.0
ROLL_INTERVAL_S = 5.0
"""Far below any `segment.ms` of `content.keys` (`CONTENT_KEYS_COMPACTION_MS`, a second at least),
whichever the topic was created with; a few records a second, compacted to one per partition."""

settings = load(WorkerSettings)
app = make_app("messenger-projections", settings)
runtime = Runtime(settings)
dead_letters_topic = settings.topic(DEAD_LETTERS.name)
runtime.dead_letters = ProducerSink(app, dead_letters_topic)


def event_topic(projection: Projection) -> faust.TopicT:
    return app.topic(
        settings.topic(projection.topic.name),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )


def records_of(events: Sequence[EventT[bytes]]) -> list[Record]:
    return [record_of(e.message) for e in events]


def record_of(message: Message) -> Record:
    """With its key and time (Faust's in seconds), which only a dead letter uses."""
    stamp = message.timestamp
    return Record(message.partition, message.offset, message.value, message.key, int(stamp * 1000) if stamp else None)


def offset_spans(records: Sequence[Record]) -> dict[int, list[int]]:
    """Partition -> [first, last] offset of a batch: where the lines logged while applying it point."""
    spans: dict[int, list[int]] = {}
    for record in records:
        span = spans.setdefault(record.partition, [record.offset, record.offset])
        span[1] = record.offset
    return spans


EXIT_CANNOT_APPLY = 75
"""EX_TEMPFAIL: the worker may be started again once PostgreSQL is back."""


def stop_worker(projection: Projection, error: Exception) -> NoReturn:
    """End the process at once, leaving the batch in hand unacked and uncommitted.

    Not `app.crash()`: Faust's orderly shutdown stops the agents before the consumer, the batch
    a stopped agent held is acked as it unwinds, and the consumer commits it on its way out, so
    the records would be skipped after a restart (seen in practice). `projection_offsets` is
    written with the rows, so dying here loses nothing: the next worker starts from there.
    """
    log.critical(
        "%s projection cannot apply a batch, stopping the worker (exit %d): %r",
        projection.name,
        EXIT_CANNOT_APPLY,
        error,
        exc_info=error,
    )
    logging.shutdown()
    os._exit(EXIT_CANNOT_APPLY)


def add_agent(projection: Projection) -> None:
    async def project(stream: StreamT[bytes]) -> None:
        async for events in batches(stream, BATCH_MAX, BATCH_WITHIN_S):
            records = records_of(events)
            with log_scope(projection=projection.name, offsets=offset_spans(records)):
                try:
                    await runtime.apply(projection, records)
                except Exception as error:  # GaveUp, or anything unforeseen: never ack what was not applied
                    stop_worker(projection, error)

    project.__qualname__ = project.__name__ = f"{projection.name}_projection"
    app.agent(event_topic(projection), name=f"projections.{projection.name}", concurrency=1)(project)


for _projection in PROJECTIONS.values():
    add_agent(_projection)


async def replay(projection: Projection, letter: DeadLetter) -> ReplayOutcome:
    """Apply a dead letter's record (`projections.dead_letters`); a database that keeps failing
    fails the replay, not the worker."""

    async def once() -> ReplayOutcome:
        pool = await runtime.writer_pool()
        async with pool.acquire() as conn:
            return await apply_replay(conn, projection, letter, datetime.now(UTC))

    try:
        return await with_retries(once, f"replaying {letter.id}")
    except Exception as error:  # GaveUp, a statement PostgreSQL refuses: the operator reads why
        log.warning("cannot replay %s: %r", letter.id, error)
        return ReplayOutcome(kind="replay_failed", id=letter.id, at=datetime.now(UTC), detail=f"{error!r}"[:500])


@app.agent(
    app.topic(dead_letters_topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"),
    name="projections.dead_letter_replays",
    concurrency=1,
)
async def replay_dead_letters(stream: StreamT[bytes]) -> None:
    """Answer the replay requests of `python -m streams dead-letters replay` for this worker's projections."""
    async for value in stream:
        request = replay_request(value, PROJECTIONS, datetime.now(UTC))
        if request is not None:
            outcome = await replay(PROJECTIONS[request.letter.consumer], request.letter)
            log.warning("dead letter %s: %s (%s)", request.letter.id, outcome.kind, outcome.detail)
            await produce(app, dead_letters_topic, [outcome])


async def check_versions() -> None:
    """Compare each projection's stored version with this code's from the start, and build (in a
    shadow, then swap) those whose live read model is older, before their agents write."""
    runtime.versions.start()


app.task(check_versions)


async def follow_recent_keys() -> None:
    await runtime.follow_recent_keys()


app.task(follow_recent_keys)


@app.page("/projections/lag")
class Lag(View):
    async def get(self, request: Request) -> Response:
        return self.json(await runtime.lag_report())


async def watch() -> None:
    """Keep the lag gauge fresh, fill the holes Faust's commits may leave, and bring the key
    mirror up to `content.keys`: a tombstone reaches it within `WATCH_INTERVAL` (docs/erasure.md)."""
    try:
        await runtime.follow_keys()
        await runtime.lag_report()
        assigned = app.assignor.assigned_actives() if app.assignor else set()
        await runtime.repair(app.conf.id, {(tp.topic, tp.partition) for tp in assigned})
    except Exception as error:  # tried again at the next tick
        log.warning("projections watch failed: %r", error)


app.timer(WATCH_INTERVAL)(watch)


ROLLED: tuple[tuple[str, bytes], ...] = (
    (settings.topic(CONTENT_KEYS.name), key_tombstone(ROLL_KEY_ID)[0]),
    (settings.topic(USER_CREDENTIALS.name), credential_tombstone(ROLL_USER_ID)[0]),
)
"""The compacted topics, and the key of the tombstone that keeps each moving (it erases nothing)."""


async def roll_compacted_topics() -> None:
    """A tombstone to every partition of `content.keys` and `user.credentials`, so that their
    segments roll and are compacted even when nothing is sent (docs/erasure.md): a shredded key or
    an erased password hash leaves the broker within about twice `CONTENT_KEYS_COMPACTION_MS`
    whatever the traffic (Kafka rolls a segment only when a record arrives)."""
    for topic, record_key in ROLLED:
        try:
            for partition in range(settings.topic_partitions):
                await app.producer.send(topic, record_key, None, partition, None, None)
        except Exception as error:  # tried again at the next tick
            log.warning("cannot roll %s: %r", topic, error)


app.timer(ROLL_INTERVAL_S)(roll_compacted_topics)


@app.on_before_shutdown.connect
async def close_watch(sender: Any, /, *args: Any, signal: BaseSignalT[Any], **kwargs: Any) -> None:
    await runtime.close_reader()
    await runtime.versions.close()
