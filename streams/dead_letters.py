"""`python -m streams dead-letters list|replay`: the records the workers skipped, and feeding one again.

A replay first reads the record with the code as it is now, and refuses (`ReplayRefused`, the
command exits 1) while it would still be skipped, so it is worth running after a fix only:
- a command an agent skipped is produced again, with its own bytes and key, to the partition of
  its topic it came from: the agent decides it as it would have (a decision is idempotent by the
  command's ids, so a command decided twice is a duplicate, not a second change). Its `reply_to`
  is dropped when that gateway's reply topic is gone (the gateway stopped waiting long ago);
- an event a projection skipped is applied to that projection by the projections worker, with
  the projection's statement, once (`projections.dead_letters`): this command asks on the topic
  and waits for the answer;
- an event the chat agent skipped while catching up its tables is refused: nothing outside the
  worker writes its tables. The same record was dead-lettered by the projection of its topic.
Either way a `ReplayOutcome` on the letter's key records it, and `list` shows it; a letter
replayed already is not fed again.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from config.kafka import client_options
from config.settings import CommonSettings
from runtime.topic_log import read_topic, topic_partitions
from schemas.commands import decode_command, encode_command
from schemas.dead_letters import (
    DeadLetter,
    DeadLetterEntry,
    DeadLetterPage,
    ReplayOutcome,
    ReplayRequest,
    decode_letter,
    encode_letter,
    find,
    key_of,
    page_of,
)
from schemas.events import BadRecord, decode_event
from schemas.topics import COMMAND_TOPICS, DEAD_LETTERS, EVENT_TOPICS

AGENTS = frozenset({"chat_decider", "user_decider"})
"""The consumers of this worker; any other is a projection (whose catalogue is not this package's to import)."""
ANSWER_WAIT_S = 30.0
"""How long `replay` waits for the projections worker's answer (a worker answers in well under a second)."""


class ReplayRefused(Exception):
    """The replay did not happen (or failed); the message says why."""


async def read_dead_letters(
    settings: CommonSettings, *, after: str | None = None, limit: int = 50, consumer: str | None = None
) -> DeadLetterPage:
    """A page of the dead letters, newest first (`schemas.dead_letters.page_of`)."""
    return page_of(
        await read_topic(settings, settings.topic(DEAD_LETTERS.name)), after=after, limit=limit, consumer=consumer
    )


def describe(entry: DeadLetterEntry) -> str:
    """One line per dead letter, for a terminal."""
    letter = entry.letter
    seen = f" (seen {entry.seen}x)" if entry.seen > 1 else ""
    outcome = f" -> {entry.outcome}" if entry.outcome else ""
    size = len(letter.value) if letter.value is not None else 0
    return (
        f"{entry.id}  {entry.status}  {letter.reason}: {letter.detail}  "
        f"[{size} bytes, dead at {letter.dead_at.isoformat(timespec='seconds')}{seen}]{outcome}"
    )


async def replay(settings: CommonSettings, ref: str, *, wait_s: float = ANSWER_WAIT_S) -> ReplayOutcome:
    """Feed again the dead letter `ref` names (an id, or `topic:partition:offset`); its outcome.

    `ReplayRefused` when there is no such letter, when it would still be skipped, or when its
    replay failed."""
    entry = await the_entry(settings, ref)
    letter = entry.letter
    if entry.status == "replayed":
        return ReplayOutcome(kind="replayed", id=entry.id, at=datetime.now(UTC), detail=f"already: {entry.outcome}")
    command_topics = {settings.topic(t.name) for t in COMMAND_TOPICS}
    event_topics = {settings.topic(t.name) for t in EVENT_TOPICS}
    if letter.consumer in AGENTS and letter.topic in command_topics:
        return await replay_command(settings, letter)
    if letter.consumer not in AGENTS and letter.topic in event_topics:
        return await replay_event(settings, letter, wait_s)
    raise ReplayRefused(
        f"{entry.id}: {letter.consumer} skipped it while catching up its tables from {letter.topic}, which nothing "
        "outside the worker writes; the projection reading that topic dead-lettered the same record: replay that one"
    )


async def the_entry(settings: CommonSettings, ref: str) -> DeadLetterEntry:
    matches = find(await read_topic(settings, settings.topic(DEAD_LETTERS.name)), ref)
    if not matches:
        raise ReplayRefused(f"no dead letter {ref} (`dead-letters list` shows their ids)")
    if len(matches) > 1:
        raise ReplayRefused(f"several consumers skipped {ref}; name one: {', '.join(sorted(m.id for m in matches))}")
    return matches[0]


async def replay_command(settings: CommonSettings, letter: DeadLetter) -> ReplayOutcome:
    try:
        command = decode_command(letter.value or b"")
    except ValueError as error:
        raise ReplayRefused(f"{letter.id}: still no command: {str(error).splitlines()[0]}") from None
    value = letter.value or b""
    dropped = ""
    if command.reply_to and not await topic_exists(settings, command.reply_to):
        value = encode_command(command.model_copy(update={"reply_to": None}))
        dropped = f" (without reply_to: {command.reply_to} is gone)"
    producer = AIOKafkaProducer(**client_options(settings), acks="all")
    await producer.start()
    try:
        sent = await producer.send_and_wait(letter.topic, value, key=letter.key, partition=letter.partition)
        where = f"produced again to {sent.topic}[{sent.partition}]@{sent.offset}{dropped}"
        outcome = ReplayOutcome(kind="replayed", id=letter.id, at=datetime.now(UTC), detail=where)
        await producer.send_and_wait(settings.topic(DEAD_LETTERS.name), encode_letter(outcome), key=key_of(outcome))
    finally:
        await producer.stop()
    return outcome


async def replay_event(settings: CommonSettings, letter: DeadLetter, wait_s: float) -> ReplayOutcome:
    """Ask the projections worker, and wait for its answer after the request in the log."""
    try:
        decode_event(letter.value)
    except BadRecord as error:
        raise ReplayRefused(f"{letter.id}: still no event: {error}") from None
    request = ReplayRequest(letter=letter, requested_at=datetime.now(UTC))
    producer = AIOKafkaProducer(**client_options(settings), acks="all")
    await producer.start()
    try:
        asked = await producer.send_and_wait(
            settings.topic(DEAD_LETTERS.name), encode_letter(request), key=key_of(request)
        )
    finally:
        await producer.stop()
    outcome = await answer_to(
        settings, letter.id, TopicPartition(asked.topic, asked.partition), asked.offset + 1, wait_s
    )
    if outcome is None:
        raise ReplayRefused(
            f"{letter.id}: no projections worker answered within {wait_s:.0f}s (is one running?); "
            "the request lapses after 5 minutes unanswered"
        )
    if outcome.kind == "replay_failed":
        raise ReplayRefused(f"{letter.id}: {outcome.detail}")
    return outcome


async def answer_to(
    settings: CommonSettings, letter_id: str, tp: TopicPartition, start: int, wait_s: float
) -> ReplayOutcome | None:
    consumer = AIOKafkaConsumer(**client_options(settings), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([tp])
        consumer.seek(tp, start)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            fetched = await consumer.getmany(tp, timeout_ms=500)
            for record in fetched.get(tp, []):
                answer = answer_in(record.value, letter_id)
                if answer is not None:
                    return answer
        return None
    finally:
        await consumer.stop()


def answer_in(value: bytes | None, letter_id: str) -> ReplayOutcome | None:
    try:
        record = decode_letter(value or b"")
    except ValueError:
        return None
    return record if isinstance(record, ReplayOutcome) and record.id == letter_id else None


async def topic_exists(settings: CommonSettings, topic: str) -> bool:
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        return bool(await topic_partitions(admin, topic))
    finally:
        await admin.close()
