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

The steps are the pipeline every agent shares (`streams.pipeline`); this module adds the tables,
the catch-up (step 1, the pipeline's `prepare`) and the checkpoints (after step 4).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import faust
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from faust.types import TableT
from faust.types.tuples import RecordMetadata

from config.kafka import client_options
from config.settings import StreamsSettings
from runtime import table_store
from schemas import topics
from schemas.commands import Command
from schemas.dead_letters import DeadLetter, encode_letter, key_of
from schemas.events import BadRecord, Event, UnknownEventType, decode_event
from streams.chat_rules import decide, evolve, shredded_in
from streams.chat_state import ChatState, JsonObject, StoredMessage, chat_from_json, message_from_json
from streams.decision import Decision
from streams.outbox import Outbox, PendingEvent, SourceRecord, skip_bad_record
from streams.pipeline import Decided, DecidingAgent, run_agent

log = logging.getLogger(__name__)

CHECKPOINT_EVERY_S = 1.0
"""An event partition's checkpoint is written at most once a second, not after every batch: at
1,000 msg/s that was nearly a changelog record per message. A checkpoint only bounds what the next
catch-up replays (about a second more, `evolve` being idempotent); it never decides anything."""


@dataclass
class ChatTables:
    """The tables hold JSON objects (`streams.chat_state` turns them into state and back)."""

    chats: TableT[str, JsonObject]
    messages: TableT[str, JsonObject]
    checkpoints: TableT[str, int]
    """`{topic}:{partition}` -> the next offset of that event partition not yet in the tables."""


class TableChatStore:
    """A `ChatStore` over the tables that keeps its writes aside (typed) until `commit`."""

    def __init__(self, tables: ChatTables, partition: int = 0) -> None:
        self.tables = tables
        self.partition = partition
        self.chats: dict[str, tuple[int, ChatState]] = {}
        self.messages: dict[str, tuple[int, StoredMessage]] = {}
        self.checkpoints: dict[str, tuple[int, int]] = {}

    def get_chat(self, chat_id: str) -> ChatState | None:
        if chat_id in self.chats:
            return self.chats[chat_id][1]
        stored = table_store.get(self.tables.chats, self.partition, chat_id)
        return None if stored is None else chat_from_json(stored)

    def set_chat(self, chat_id: str, chat: ChatState) -> None:
        self.chats[chat_id] = (self.partition, chat)

    def get_message(self, message_id: str) -> StoredMessage | None:
        if message_id in self.messages:
            return self.messages[message_id][1]
        stored = table_store.get(self.tables.messages, self.partition, message_id)
        return None if stored is None else message_from_json(stored)

    def set_message(self, message_id: str, message: StoredMessage) -> None:
        self.messages[message_id] = (self.partition, message)

    def set_checkpoint(self, topic: str, partition: int, next_offset: int) -> None:
        self.checkpoints[f"{topic}:{partition}"] = (self.partition, next_offset)

    async def commit(self, outbox: Outbox) -> None:
        for chat_id, (partition, chat) in self.chats.items():
            await outbox.put(self.tables.chats, partition, chat_id, chat.to_json())
        for message_id, (partition, message) in self.messages.items():
            await outbox.put(self.tables.messages, partition, message_id, message.to_json())
        for key, (partition, offset) in self.checkpoints.items():
            await outbox.put(self.tables.checkpoints, partition, key, offset)
        self.chats, self.messages, self.checkpoints = {}, {}, {}


class ChatDecider(DecidingAgent[TableChatStore]):
    consumer = "chat_decider"

    def __init__(self, app: faust.App, settings: StreamsSettings, tables: ChatTables) -> None:
        super().__init__(app, settings.topic(topics.DEAD_LETTERS.name), settings.topic(topics.MESSAGE_DELIVERED.name))
        self.settings = settings
        self.tables = tables
        self.chat_id_key = settings.chat_id_key.encode()
        self.event_topics = (settings.topic(topics.CHAT_EVENTS.name), settings.topic(topics.MESSAGE_EVENTS.name))
        self.keys_topic = settings.topic(topics.CONTENT_KEYS.name)
        self.caught_up: set[int] = set()
        self.unsaved: dict[tuple[str, int], int] = {}
        """(event topic, partition) -> the next offset the tables hold, not yet in a checkpoint."""
        self.checkpointed_at: dict[tuple[str, int], float] = {}

    def new_store(self) -> TableChatStore:
        return TableChatStore(self.tables)

    def decide(self, store: TableChatStore, command: Command) -> Decision:
        return decide(store, command, chat_id_key=self.chat_id_key, max_group_members=self.settings.max_group_members)

    def destination(self, decided: Decided, event: Event) -> PendingEvent:
        """Events of a chat go to its partition of the chat or message events."""
        chat_topic, message_topic = self.event_topics
        topic = chat_topic if event.type.startswith("chat.") else message_topic
        return PendingEvent(topic, str(event.aggregate_id).encode(), decided.partition, event)

    def forget_preparation(self) -> None:
        """Every partition is caught up again before its next decision (which also moves its
        checkpoint); a revoked partition's checkpoint is its new owner's to write."""
        self.caught_up.clear()
        self.unsaved.clear()
        self.checkpointed_at.clear()

    async def prepare(self, partitions: set[int]) -> None:
        await self.catch_up(partitions)

    async def after_batch(self, outbox: Outbox, metadata: list[RecordMetadata]) -> None:
        """Move the checkpoints that are due (`CHECKPOINT_EVERY_S`), once the batch's table writes
        are durable, and without waiting: a checkpoint that is lost or late only makes the next
        catch-up replay a little more."""
        for m in metadata:
            where = (m.topic, m.partition)
            self.unsaved[where] = max(self.unsaved.get(where, 0), m.offset + 1)
        now = time.monotonic()
        for where, next_offset in list(self.unsaved.items()):
            if now - self.checkpointed_at.get(where, -CHECKPOINT_EVERY_S) >= CHECKPOINT_EVERY_S:
                topic, partition = where
                await outbox.put(self.tables.checkpoints, partition, f"{topic}:{partition}", next_offset)
                self.checkpointed_at[where] = now
                del self.unsaved[where]
        outbox.wait_in_background()

    async def catch_up(self, partitions: set[int]) -> None:
        missing = sorted(partitions - self.caught_up)
        if not missing:
            return
        consumer = AIOKafkaConsumer(
            **client_options(self.settings),
            group_id=None,
            enable_auto_commit=False,
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
        letters: list[DeadLetter] = []
        shredded: list[str] = []
        """Tombstones written again: those of the replayed events may have been lost with them."""
        for topic in self.event_topics:
            tp = TopicPartition(topic, partition)
            start = table_store.get(self.tables.checkpoints, partition, f"{topic}:{partition}") or 0
            end = (await consumer.end_offsets([tp]))[tp]
            if start < end:
                events, skipped = await read_range(consumer, tp, start, end)
                for event in events:
                    shredded.extend(shredded_in(store, event))
                    evolve(store, event)
                    replayed += 1
                letters.extend(
                    skip_bad_record(self.consumer, record, reason, error) for record, reason, error in skipped
                )
            store.set_checkpoint(topic, partition, end)
        outbox = Outbox(self.app)
        for letter in letters:
            await outbox.send(self.dead_letters_topic, key_of(letter), encode_letter(letter))
        await outbox.shred(self.keys_topic, shredded)
        await store.commit(outbox)
        await outbox.wait()
        return replayed


Skip = tuple[SourceRecord, str, BadRecord]
"""A record the catch-up skipped: the record, the reason label, the error."""


async def read_range(
    consumer: AIOKafkaConsumer, tp: TopicPartition, start: int, end: int
) -> tuple[list[Event], list[Skip]]:
    """The events of `tp` from `start` up to `end` (exclusive), and the records that are none."""
    consumer.assign([tp])
    consumer.seek(tp, start)
    events: list[Event] = []
    skipped: list[Skip] = []
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
                source = SourceRecord(
                    tp.topic, tp.partition, record.offset, record.key, record.value, record_time(record)
                )
                skipped.append((source, "unknown_type" if isinstance(error, UnknownEventType) else "malformed", error))
    return events, skipped


def record_time(record: ConsumerRecord[bytes, bytes]) -> datetime | None:
    return datetime.fromtimestamp(record.timestamp / 1000, UTC) if record.timestamp >= 0 else None


def register(app: faust.App, settings: StreamsSettings) -> ChatDecider:
    """Declare the chat agent and its tables on `app`."""
    partitions = settings.topic_partitions
    tables = ChatTables(
        chats=app.Table(
            "chat_state",
            partitions=partitions,
            key_type=str,
            options=table_store.table_options(),
            help="chat_id -> the chat: type, title, creator, members with their roles, last message seq",
        ),
        messages=app.Table(
            "message_index",
            partitions=partitions,
            key_type=str,
            options=table_store.table_options(),
            help="message_id -> the message: chat, seq, sender, text, edited/deleted (in its chat's partition)",
        ),
        checkpoints=app.Table(
            "event_checkpoint",
            partitions=partitions,
            key_type=str,
            options=table_store.table_options(),
            help="topic:partition of the chat and message events -> the next offset not yet in these tables",
        ),
    )
    decider = ChatDecider(app, settings, tables)
    source = app.topic(
        settings.topic(topics.CHAT_COMMANDS.name),
        settings.topic(topics.MESSAGE_SEND.name),
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
    )
    run_agent(app, decider, source)
    return decider
