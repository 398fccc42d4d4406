"""The one way an agent decides: consume a batch of commands, decide each against the state (plus
what earlier commands of the batch decided), append the events and wait until the broker has them
all (acks=all), then write the state's tables, reply, deliver, and flush.

A crash before the events are durable loses only unacknowledged commands (clients retry); a crash
after it is repaired by deciding the commands again: event ids derive from the commands, so what
did land is found again, not written twice. If the append fails, the batch is decided anew
(`prepare` runs again first) with the workers' retry policy; when it still fails the worker
stops with exit code 70 and its supervisor restarts it (an agent that raised would have its
records acked and skipped by Faust).

A record that is no command is skipped, and its dead letter (`schemas.dead_letters`) is durable on
`dead.letters` before the batch goes on, with the same retries and exit: nothing is skipped unseen.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Generic, Protocol, TypeVar

import faust
from aiokafka.errors import KafkaError
from faust.exceptions import ProducerSendError
from faust.types import EventT
from faust.types.tuples import Message, RecordMetadata

from config.logs import log_scope
from runtime.retry import GaveUp, retrying
from runtime.stream_batches import batches
from schemas import codec
from schemas.commands import Command, DeliveryRecord, decode_command, encode_shared_delivery
from schemas.dead_letters import DeadLetter
from schemas.events import Event
from streams.decision import Decision
from streams.outbox import (
    Outbox,
    PendingEvent,
    SourceRecord,
    produce_durable,
    reply_for,
    send_dead_letters,
    skip_bad_record,
)

log = logging.getLogger(__name__)

BATCH_MAX = 500
BATCH_WITHIN_S = 0.005
"""While commands keep coming, a batch closes 5 ms after the last one was decided, or at 500
commands; a command after a quiet 5 ms is decided at once (`runtime.stream_batches`)."""
RECIPIENTS_PER_RECORD = 1000
"""At most this many recipients in one `message.delivered` record (about 40 bytes each): above
any group's size (`MAX_GROUP_MEMBERS`, 500 by default), and far below Kafka's record size."""
APPEND_ATTEMPTS = 5
FIRST_APPEND_PAUSE_S = 1.0
"""The ceiling of the first pause, doubled each time: with full jitter 7.5 s of waiting on average
(at most 15 s) before the worker gives up, longer than a leader's election after a broker died."""
EXIT_CANNOT_APPEND = 70
APPEND_ERRORS = (KafkaError, ProducerSendError)


class TableStore(Protocol):
    """An agent's state for one batch: reads the tables, keeps its writes aside until `commit`."""

    partition: int
    """The partition of the command being decided: the state it writes goes to that partition."""

    async def commit(self, outbox: Outbox) -> None: ...


@dataclass
class Decided:
    command: Command
    partition: int
    decision: Decision
    written: list[RecordMetadata] = field(default_factory=list)
    """Where the decision's records beside its events (`Decision.credentials`) landed."""


Store = TypeVar("Store", bound=TableStore)


class DecidingAgent(ABC, Generic[Store]):
    """One agent's part: its state, its rules and where its events go; the steps are shared."""

    consumer: str
    """The agent's name, the `consumer` of the dead letters it sends."""

    def __init__(self, app: faust.App, dead_letters_topic: str, delivered_topic: str = "") -> None:
        self.app = app
        self.dead_letters_topic = dead_letters_topic
        self.delivered_topic = delivered_topic
        """`message.delivered` (with its prefix) for an agent that delivers frames."""
        self.keys_topic = ""
        """`content.keys` (with its prefix) for an agent whose decisions shred data keys."""
        self.credentials_topic = ""
        """`user.credentials` (with its prefix) for an agent whose decisions write password hashes."""

    @abstractmethod
    def new_store(self) -> Store: ...

    @abstractmethod
    def decide(self, store: Store, command: Command) -> Decision: ...

    @abstractmethod
    def destination(self, decided: Decided, event: Event) -> PendingEvent:
        """Where `event` is appended: its topic, key and partition."""

    async def prepare(self, partitions: set[int]) -> None:
        """Before deciding commands of `partitions` (the chat agent catches up from the log here)."""

    def forget_preparation(self) -> None:
        """After a rebalance or a failed append: `prepare` runs again before the next decision."""

    async def after_batch(self, outbox: Outbox, metadata: list[RecordMetadata]) -> None:
        """Once the batch's table writes, replies and deliveries are durable."""

    async def process(self, batch: Sequence[EventT[bytes]]) -> None:
        commands, letters = parse_commands(self.consumer, batch)
        if letters:
            await self.send_dead_letters(letters)
        if not commands:
            return
        with log_scope(correlation_ids=[command.correlation_id for _, command in commands]):
            await self.process_commands(commands)

    async def process_commands(self, commands: list[tuple[int, Command]]) -> None:
        """Every line logged meanwhile (a failed append, the exit) names the batch's commands."""
        try:
            store, decided, metadata = await retrying(
                lambda: self.decide_and_append(commands),
                what="appending events",
                attempts=APPEND_ATTEMPTS,
                first_pause_s=FIRST_APPEND_PAUSE_S,
                retry_on=APPEND_ERRORS,
            )
        except GaveUp as error:
            log.critical("cannot append events (%s); stopping the worker", error)
            os._exit(EXIT_CANNOT_APPEND)
        outbox = Outbox(self.app)
        await store.commit(outbox)
        await self.answer(outbox, decided, metadata)
        await outbox.wait()
        await self.after_batch(outbox, metadata)

    async def send_dead_letters(self, letters: list[DeadLetter]) -> None:
        """Before the batch is acked, with the appends' retries: a skipped command is never lost silently."""
        try:
            await retrying(
                lambda: send_dead_letters(self.app, self.dead_letters_topic, letters),
                what="sending dead letters",
                attempts=APPEND_ATTEMPTS,
                first_pause_s=FIRST_APPEND_PAUSE_S,
                retry_on=APPEND_ERRORS,
            )
        except GaveUp as error:
            log.critical("cannot send dead letters (%s); stopping the worker", error)
            os._exit(EXIT_CANNOT_APPEND)

    async def decide_and_append(
        self, commands: list[tuple[int, Command]]
    ) -> tuple[Store, list[Decided], list[RecordMetadata]]:
        try:
            await self.prepare({p for p, _ in commands})
            store = self.new_store()
            decided = []
            for partition, command in commands:
                store.partition = partition
                decided.append(Decided(command, partition, self.decide(store, command)))
            pending = [self.destination(d, event) for d in decided for event in d.decision.events]
            shredded = [key_id for d in decided for key_id in d.decision.shredded]
            records = [(self.credentials_topic, *record) for d in decided for record in d.decision.credentials]
            landed = await produce_durable(self.app, pending, self.keys_topic, shredded, records)
            written = iter(landed[len(pending) :])
            for d in decided:
                d.written = [next(written) for _ in d.decision.credentials]
            return store, decided, landed[: len(pending)]
        except APPEND_ERRORS:
            self.forget_preparation()
            raise

    def delivery_key(self, command: Command) -> bytes:
        """The key of the `message.delivered` records of `command`'s decision: the chat's id, so
        that a chat's frames are in one partition, read in the order they were decided."""
        return str(getattr(command.body, "chat_id", "")).encode()

    async def answer(self, outbox: Outbox, decided: list[Decided], metadata: list[RecordMetadata]) -> None:
        """Replies (with where each event landed) and one delivery record per frame."""
        landed = iter(metadata)
        for d in decided:
            decision = d.decision
            mine = [next(landed) for _ in decision.events] + d.written
            await outbox.reply(d.command, reply_for(d.command, decision, mine))
            if decision.deliveries:
                await self.deliver(outbox, self.delivery_key(d.command), decision.deliveries)

    async def deliver(self, outbox: Outbox, key: bytes, deliveries: list[DeliveryRecord]) -> None:
        """One record per frame, naming its recipients: each frame is encoded and written once."""
        for group in shared_groups(deliveries):
            first = group[0]
            skipped = next((d for d in group if d.skip_connection is not None), None)
            value = encode_shared_delivery(
                [d.recipient_id for d in group],
                codec.dumps(first.frame),
                skipped.skip_connection if skipped else None,
                skipped.recipient_id if skipped else None,
            )
            await outbox.send(self.delivered_topic, key, value)


def shared_groups(deliveries: list[DeliveryRecord]) -> list[list[DeliveryRecord]]:
    """The deliveries in order, cut into runs that share one record: the same frame (a frame's
    recipients come one after another), at most one skipped socket, `RECIPIENTS_PER_RECORD`
    recipients at most."""
    groups: list[list[DeliveryRecord]] = []
    group: list[DeliveryRecord] = []
    skips = 0
    for delivery in deliveries:
        skip = delivery.skip_connection is not None
        if group and (delivery.frame is not group[0].frame or len(group) >= RECIPIENTS_PER_RECORD or (skip and skips)):
            groups.append(group)
            group, skips = [], 0
        group.append(delivery)
        skips += skip
    if group:
        groups.append(group)
    return groups


def parse_commands(consumer: str, batch: Sequence[EventT[bytes]]) -> tuple[list[tuple[int, Command]], list[DeadLetter]]:
    """The commands of `batch` with their partitions, and the dead letters of the records that are none."""
    commands = []
    letters = []
    for event in batch:
        message = event.message
        try:
            commands.append((message.partition, decode_command(message.value or b"")))
        except ValueError as error:
            letters.append(skip_bad_record(consumer, source_of(message), "malformed", error))
    return commands, letters


def source_of(message: Message) -> SourceRecord:
    """Faust's message (its timestamp in seconds) as the record a dead letter copies."""
    occurred_at = datetime.fromtimestamp(message.timestamp, UTC) if message.timestamp else None
    return SourceRecord(message.topic, message.partition, message.offset, message.key, message.value, occurred_at)


def run_agent(app: faust.App, agent: DecidingAgent[Store], source: faust.TopicT) -> None:
    """Declare `agent` on `app`: one at a time (`concurrency=1`, faust-streaming #606), in batches."""

    @app.on_partitions_assigned.connect
    async def on_assigned(sender: object, /, *_: object, signal: object, **__: object) -> None:
        agent.forget_preparation()

    async def decide(stream: faust.StreamT[bytes]) -> None:
        async for batch in batches(stream, BATCH_MAX, BATCH_WITHIN_S):
            await agent.process(batch)

    app.agent(source, name=agent.consumer, concurrency=1)(decide)
