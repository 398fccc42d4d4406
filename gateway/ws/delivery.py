"""The `message.delivered` consumer: every gateway instance joins one consumer group, so each
record (a frame for one recipient, keyed by that user's id) is read by exactly one instance, which
PUBLISHes it to the recipient's channel (`gateway.ws.routing`). The instances holding that user's
sockets receive it from Redis. See docs/websocket.md, "How delivery scales".

Offsets are committed (every `COMMIT_INTERVAL_S`) only after the PUBLISHes of the records
before them have been answered, so a crash or a broker restart redelivers rather than loses; each
socket drops a `message.new` it already has (`gateway.ws.connections`). While Redis cannot be
reached, publishing is retried with backoff for as long as it takes (nothing is dropped; the
group rebalances if it takes minutes, and the records are read again). A partition the group has
no offset for is read from its start, so that nothing written before an instance got its first
assignment is skipped; records older than `MAX_AGE_S` are not pushed as they are: their
recipients get a resync instead (`gateway.ws.resync`), which gives each open socket what it
misses from the read models.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from redis.exceptions import RedisError

from config.kafka import client_options
from config.settings import GatewaySettings
from gateway.infra.healing import ConnectionState, reconnect_backoff
from gateway.ws.metrics import DELIVERIES, DELIVERY_PARTITIONS
from gateway.ws.routing import Route, UserChannels
from schemas import topics
from schemas.commands import decode_delivery
from schemas.frames import encode_frame

log = logging.getLogger(__name__)

GROUP_NAME = "gateway-delivery"
BATCH_MAX = 1000
POLL_MS = 200
HEARTBEAT_MS = 1000
SESSION_TIMEOUT_MS = 10_000
"""A crashed instance's partitions move to the others after this long."""
MAX_AGE_S = 120.0
"""Older frames are not pushed; their recipients are resynced instead. Far above a rebalance
after a crash (`SESSION_TIMEOUT_MS`), so only a new group's backlog or an outage's is concerned."""
COMMIT_INTERVAL_S = 0.5
"""Offsets are committed at most this often, not after every batch (a request each): a crash
redelivers at most this much more, which each socket drops by `seq`."""
CONNECTION_NAME = "delivery_consumer"


def group_id(settings: GatewaySettings) -> str:
    return f"{settings.topic_prefix}{GROUP_NAME}"


def route_of(record: ConsumerRecord[bytes, bytes], oldest_ms: float) -> Route | None:
    """The route of one record: its frame, or a resync of its recipient for a stale record;
    None for a record that is no `Delivery` (counted, skipped)."""
    try:
        delivery = decode_delivery(record.value or b"")
    except ValueError:
        DELIVERIES.labels("malformed").inc()
        return None
    recipient_id = delivery.recipient_id
    if record.timestamp < oldest_ms:
        DELIVERIES.labels("stale").inc()
        return Route(recipient_id, "", resync=True)
    chat_id, seq, sender_id, client_msg_id = message_position(delivery.frame)
    sent_as = client_msg_id if sender_id == recipient_id else None
    return Route(recipient_id, encode_frame(delivery.frame), delivery.skip_connection, chat_id, seq, sent_as)


def message_position(frame: dict[str, Any]) -> tuple[str | None, int, str | None, str | None]:
    """(chat id, seq, sender id, client_msg_id) of a `message.new` frame, by which sockets drop
    repeats and their own messages; (None, 0, None, None) for any other frame."""
    message = frame.get("message")
    if frame.get("type") != "message.new" or not isinstance(message, dict) or not isinstance(message.get("seq"), int):
        return None, 0, None, None
    sender, client_msg_id = message.get("sender_id"), message.get("client_msg_id")
    return (
        str(message.get("chat_id")),
        message["seq"],
        sender if isinstance(sender, str) else None,
        client_msg_id if isinstance(client_msg_id, str) else None,
    )


def without_repeated_resyncs(routes: Iterable[Route | None]) -> list[Route]:
    """The routes in order, with one resync per user at most (a stale backlog is one per record)."""
    kept: list[Route] = []
    resynced: set[str] = set()
    for route in routes:
        if route is None or (route.resync and route.user_id in resynced):
            continue
        if route.resync:
            resynced.add(route.user_id)
        kept.append(route)
    return kept


class DeliveryConsumer:
    def __init__(self, settings: GatewaySettings, channels: UserChannels) -> None:
        self._settings = settings
        self._channels = channels
        self._topic = settings.topic(topics.MESSAGE_DELIVERED.name)
        self._consumer = AIOKafkaConsumer(
            self._topic,
            **client_options(settings),
            group_id=group_id(settings),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            heartbeat_interval_ms=HEARTBEAT_MS,
            session_timeout_ms=SESSION_TIMEOUT_MS,
        )
        self._runner: asyncio.Task[None] | None = None
        self._delivered: dict[TopicPartition, int] = {}
        """Offsets after the records published and not committed yet."""
        self._next_commit = 0.0
        self.state = ConnectionState(CONNECTION_NAME)

    async def start(self) -> None:
        """Join the group; partitions come in the background."""
        await self._consumer.start()
        self.state.opened()
        self._runner = asyncio.create_task(self._run(), name="delivery consumer")

    async def stop(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
            self._runner = None
            if self._delivered:
                await self._commit(self._delivered)
            await self._consumer.stop()
            DELIVERY_PARTITIONS.set(0)

    async def _run(self) -> None:
        backoff = reconnect_backoff()
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=POLL_MS, max_records=BATCH_MAX)
                if not self.state.up:
                    self.state.opened()
                backoff.reset()
                DELIVERY_PARTITIONS.set(len(self._consumer.assignment()))
                if batches:
                    await self._deliver([r for records in batches.values() for r in records])
                    self._delivered.update({tp: records[-1].offset + 1 for tp, records in batches.items()})
                if self._delivered and time.monotonic() >= self._next_commit:
                    await self._commit(self._delivered)
            except KafkaError as error:
                self.state.lost(error)
                await asyncio.sleep(backoff.next_pause())
            except Exception:
                log.exception("delivery consumer: unexpected error; going on")
                await asyncio.sleep(backoff.next_pause())

    async def _deliver(self, records: Iterable[ConsumerRecord[bytes, bytes]]) -> None:
        """Publish every record's route; while Redis cannot take them, retry with backoff."""
        oldest_ms = (time.time() - MAX_AGE_S) * 1000
        routes = without_repeated_resyncs(route_of(record, oldest_ms) for record in records)
        backoff = reconnect_backoff()
        while True:
            try:
                DELIVERIES.labels("published").inc(await self._channels.publish(routes))
                return
            except (RedisError, OSError) as error:
                log.warning("publishing %d deliveries failed: %r; retrying", len(routes), error)
                await asyncio.sleep(backoff.next_pause())

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Commit what was delivered; after a rebalance only partitions still assigned."""
        self._next_commit = time.monotonic() + COMMIT_INTERVAL_S
        assigned = self._consumer.assignment()
        mine = {tp: offset for tp, offset in offsets.items() if tp in assigned}
        self._delivered = {}
        if not mine:
            return
        try:
            await self._consumer.commit(mine)
        except (CommitFailedError, KafkaError) as error:
            log.info("delivery offsets not committed (a rebalance?): %r", error)
