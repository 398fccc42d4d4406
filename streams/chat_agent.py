"""The chat agent: decides every command of a chat (`chat.commands`, `message.send`, keyed by
chat_id) with state in Faust tables co-partitioned with those topics.

A batch of commands goes through four steps, in this order, so that a crash anywhere loses no
acknowledged message and writes none twice:

1. catch up: the first batch of a partition after an assignment replays the tail of
   `chat.events` and `message.events` for that partition, from the checkpoint the tables hold,
   so the tables reflect every event in the log even if the last changelog writes were lost;
2. decide every command against the tables (plus what earlier commands of the batch decided);
3. append the events and wait until the broker has them all (acks=all); if that fails, the
   partitions are caught up again and the batch decided anew: ids are derived from the commands,
   so what did land is found by deduplication and not written again;
4. write the tables, send the replies (the acks) and the `message.delivered` records, flush, and
   only then move the checkpoints.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import RecordMetadata
from faust.exceptions import ProducerSendError
from faust.types import EventT, TableT

from config.kafka import client_options
from config.settings import StreamsSettings
from schemas import codec, topics
from schemas.commands import Command, decode_command, encode_delivery
from schemas.events import BadRecord, Event, decode_event
from streams.chat_rules import Decision, decide, evolve
from streams.outbox import Outbox, PendingEvent, produce_durable, reply_for, skip_bad_record

log = logging.getLogger(__name__)

BATCH_MAX = 500
BATCH_WITHIN_S = 0.005
"""A batch closes after 5 ms or 500 commands: at low rates a command waits at most 5 ms."""
PRODUCE_ATTEMPTS = 5
EXIT_CANNOT_APPLY = 70


@dataclass
class ChatTables:
    chats: TableT[str, Any]
    messages: TableT[str, Any]
    sent: TableT[str, Any]
    checkpoints: TableT[str, Any]
    """`{topic}:{partition}` -> the next offset of that event partition not yet in the tables."""


class TableChatStore:
    """A `ChatStore` over the tables that keeps its writes aside until `commit`."""

    def __init__(self, tables: ChatTables, partition: int = 0) -> None:
        self.tables = tables
        self.partition = partition
        self.writes: dict[tuple[str, str], tuple[int, Any]] = {}

    def _get(self, name: str, key: str) -> Any:
        if (name, key) in self.writes:
            return self.writes[(name, key)][1]
        return getattr(self.tables, name).get(key)

    def _set(self, name: str, key: str, value: Any) -> None:
        self.writes[(name, key)] = (self.partition, value)

    def get_chat(self, chat_id: str) -> dict[str, Any] | None:
        return self._get("chats", chat_id)  # type: ignore[no-any-return]

    def set_chat(self, chat_id: str, chat: dict[str, Any]) -> None:
        self._set("chats", chat_id, chat)

    def get_message(self, message_id: str) -> dict[str, Any] | None:
        return self._get("messages", message_id)  # type: ignore[no-any-return]

    def set_message(self, message_id: str, message: dict[str, Any]) -> None:
        self._set("messages", message_id, message)

    def get_sent(self, dedupe_key: str) -> str | None:
        return self._get("sent", dedupe_key)  # type: ignore[no-any-return]

    def set_sent(self, dedupe_key: str, message_id: str) -> None:
        self._set("sent", dedupe_key, message_id)

    def set_checkpoint(self, topic: str, partition: int, next_offset: int) -> None:
        self._set("checkpoints", f"{topic}:{partition}", next_offset)

    async def commit(self, outbox: Outbox) -> None:
        for (name, key), (partition, value) in self.writes.items():
            await outbox.put(getattr(self.tables, name), partition, key, value)
        self.writes.clear()


@dataclass
class Decided:
    command: Command
    partition: int
    decision: Decision


class ChatDecider:
    def __init__(self, app: faust.App, settings: StreamsSettings, tables: ChatTables) -> None:
        self.app = app
        self.settings = settings
        self.tables = tables
        self.event_topics = (settings.topic(topics.CHAT_EVENTS.name), settings.topic(topics.MESSAGE_EVENTS.name))
        self.delivered_topic = settings.topic(topics.MESSAGE_DELIVERED.name)
        self.caught_up: set[int] = set()

    def forget_catch_up(self) -> None:
        """After a rebalance every partition is caught up again before its next decision."""
        self.caught_up.clear()

    async def process(self, batch: Sequence[EventT[bytes]]) -> None:
        commands = parse_commands(batch)
        if not commands:
            return
        partitions = {p for p, _ in commands}
        for attempt in range(1, PRODUCE_ATTEMPTS + 1):
            try:
                await self.catch_up(partitions)
                store = TableChatStore(self.tables)
                decided = decide_all(store, commands, self.settings)
                metadata = await produce_durable(self.app, self.pending_events(decided))
                break
            except (KafkaError, ProducerSendError) as error:
                log.warning("appending events failed (attempt %d): %r", attempt, error)
                self.forget_catch_up()
                await asyncio.sleep(0.2 * 2**attempt)
        else:
            log.critical("cannot append events after %d attempts; stopping the worker", PRODUCE_ATTEMPTS)
            os._exit(EXIT_CANNOT_APPLY)
        outbox = Outbox(self.app)
        await store.commit(outbox)
        await self.answer(outbox, decided, metadata)
        await outbox.wait()
        await self.move_checkpoints(outbox, metadata)

    def pending_events(self, decided: list[Decided]) -> list[PendingEvent]:
        chat_topic, message_topic = self.event_topics
        return [
            PendingEvent(
                chat_topic if event.type.startswith("chat.") else message_topic,
                str(event.aggregate_id).encode(), d.partition, event,
            )
            for d in decided
            for event in d.decision.events
        ]

    async def answer(self, outbox: Outbox, decided: list[Decided], metadata: list[RecordMetadata]) -> None:
        """Replies (with where each event landed) and one delivery record per recipient."""
        landed = iter(metadata)
        for d in decided:
            mine = [next(landed) for _ in d.decision.events]
            decision = d.decision
            reply = reply_for(
                d.command, decision.ok, code=decision.code, message=decision.message,
                duplicate=decision.duplicate, result=decision.result, metadata=mine,
            )
            await outbox.reply(d.command, reply)
            frame: dict[str, Any] | None = None
            frame_json = b""
            for delivery in decision.deliveries:
                if delivery.frame is not frame:  # a frame's recipients come one after another
                    frame, frame_json = delivery.frame, codec.dumps(delivery.frame)
                recipient = str(delivery.recipient_id)
                await outbox.send(
                    self.delivered_topic, recipient.encode(),
                    encode_delivery(recipient, frame_json, delivery.skip_connection),
                )

    async def move_checkpoints(self, outbox: Outbox, metadata: list[RecordMetadata]) -> None:
        """Sent once the batch's table writes are durable, and not awaited: a checkpoint that is
        lost only makes the next catch-up replay a little more (`evolve` is idempotent)."""
        latest: dict[tuple[str, int], int] = {}
        for m in metadata:
            latest[(m.topic, m.partition)] = max(latest.get((m.topic, m.partition), 0), m.offset + 1)
        for (topic, partition), next_offset in latest.items():
            await outbox.put(self.tables.checkpoints, partition, f"{topic}:{partition}", next_offset)

    async def catch_up(self, partitions: set[int]) -> None:
        missing = sorted(partitions - self.caught_up)
        if not missing:
            return
        consumer = AIOKafkaConsumer(
            **client_options(self.settings), group_id=None, enable_auto_commit=False,
        )
        await consumer.start()
        try:
            for partition in missing:
                replayed = await self.replay_tail(consumer, partition)
                if replayed:
                    log.info("partition %d: caught up %d events from the log", partition, replayed)
                self.caught_up.add(partition)
        finally:
            await consumer.stop()

    async def replay_tail(self, consumer: AIOKafkaConsumer, partition: int) -> int:
        store = TableChatStore(self.tables, partition)
        replayed = 0
        for topic in self.event_topics:
            tp = TopicPartition(topic, partition)
            start = self.tables.checkpoints.get(f"{topic}:{partition}") or 0
            end = (await consumer.end_offsets([tp]))[tp]
            if start < end:
                for event in await read_range(consumer, tp, start, end):
                    evolve(store, event)
                    replayed += 1
            store.set_checkpoint(topic, partition, end)
        outbox = Outbox(self.app)
        await store.commit(outbox)
        await outbox.wait()
        return replayed


async def read_range(consumer: AIOKafkaConsumer, tp: TopicPartition, start: int, end: int) -> list[Event]:
    """The events of `tp` from `start` up to `end` (exclusive); bad records are skipped."""
    consumer.assign([tp])
    consumer.seek(tp, start)
    events: list[Event] = []
    position = start
    while position < end:
        batches = await consumer.getmany(tp, timeout_ms=1000, max_records=1000)
        for record in batches.get(tp, []):
            position = record.offset + 1
            if record.offset >= end:
                break
            try:
                events.append(decode_event(record.value))
            except BadRecord as error:
                skip_bad_record(tp.topic, tp.partition, record.offset, type(error).__name__, error)
    return events


def parse_commands(batch: Sequence[EventT[bytes]]) -> list[tuple[int, Command]]:
    commands = []
    for event in batch:
        message = event.message
        try:
            commands.append((message.partition, decode_command(message.value or b"")))
        except ValueError as error:
            skip_bad_record(message.topic, message.partition, message.offset, "malformed", error)
    return commands


def decide_all(store: TableChatStore, commands: list[tuple[int, Command]], settings: StreamsSettings) -> list[Decided]:
    decided = []
    key = settings.chat_id_key.encode()
    for partition, command in commands:
        store.partition = partition
        decision = decide(store, command, chat_id_key=key, max_group_members=settings.max_group_members)
        decided.append(Decided(command, partition, decision))
    return decided


def register(app: faust.App, settings: StreamsSettings) -> ChatDecider:
    """Declare the chat agent and its tables on `app`."""
    partitions = settings.topic_partitions
    tables = ChatTables(
        chats=app.Table("chat_state", partitions=partitions, key_type=str),
        messages=app.Table("message_index", partitions=partitions, key_type=str),
        sent=app.Table("send_dedupe", partitions=partitions, key_type=str),
        checkpoints=app.Table("event_checkpoint", partitions=partitions, key_type=str),
    )
    decider = ChatDecider(app, settings, tables)
    source = app.topic(
        settings.topic(topics.CHAT_COMMANDS.name), settings.topic(topics.MESSAGE_SEND.name),
        key_serializer="raw", value_serializer="raw", partitions=partitions,
    )

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def on_assigned(sender: faust.App, assigned: Any, **_: Any) -> None:
        decider.forget_catch_up()

    @app.agent(source, name="chat_decider", concurrency=1)
    async def chat_decider(stream: faust.StreamT[bytes]) -> None:
        async for batch in cast(faust.Stream[bytes], stream).take_events(BATCH_MAX, within=BATCH_WITHIN_S):
            await decider.process(batch)

    return decider
