"""The `message.delivered` consumer: every gateway instance joins one consumer group, so each
record (a frame for one recipient, keyed by that user's id) is read by exactly one instance, which
PUBLISHes it to the recipient's channel (`gateway.ws.routing`). The instances holding that user's
sockets receive it from Redis. See docs/websocket.md, "How delivery scales".

Offsets are committed (every `COMMIT_INTERVAL_S`) only after the PUBLISHes of the records
before them have been answered, so a crash redelivers rather than loses (a client may see a frame
twice and recognises it by `seq` or id). A partition the group has no offset for is read from
its start, so that nothing written before an instance got its first assignment is skipped;
records older than `MAX_AGE_S` are dropped rather than pushed: whoever was meant to get them has
reconnected and synced since (or will).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from redis.exceptions import RedisError

from config.settings import GatewaySettings
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
"""Older frames are not pushed. Far above a rebalance after a crash (`SESSION_TIMEOUT_MS`), so
only a new group's backlog or an outage's is dropped; clients catch up with `sync`."""
PUBLISH_RETRY_PAUSE_S = 0.5
COMMIT_INTERVAL_S = 0.5
"""Offsets are committed at most this often, not after every batch (a request each): a crash
redelivers at most this much more, which clients recognise by `seq`."""
PUBLISH_ATTEMPTS = 5


def group_id(settings: GatewaySettings) -> str:
    return f"{settings.topic_prefix}{GROUP_NAME}"


def route_of(record: ConsumerRecord[bytes, bytes], oldest_ms: float) -> Route | None:
    """The route of one record, or None for a stale record or one that is no `Delivery`
    (counted, skipped)."""
    if record.timestamp < oldest_ms:
        DELIVERIES.labels("stale").inc()
        return None
    try:
        recipient_id, frame, skip_connection = decode_delivery(record.value or b"")
    except ValueError:
        DELIVERIES.labels("malformed").inc()
        return None
    return Route(recipient_id, encode_frame(frame), skip_connection)


class DeliveryConsumer:
    def __init__(self, settings: GatewaySettings, channels: UserChannels) -> None:
        self._settings = settings
        self._channels = channels
        self._topic = settings.topic(topics.MESSAGE_DELIVERED.name)
        self._consumer = AIOKafkaConsumer(
            self._topic,
            bootstrap_servers=settings.broker_list,
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

    async def start(self) -> None:
        """Join the group; partitions come in the background."""
        await self._consumer.start()
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
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=POLL_MS, max_records=BATCH_MAX)
                DELIVERY_PARTITIONS.set(len(self._consumer.assignment()))
                if batches:
                    await self._deliver([r for records in batches.values() for r in records])
                    self._delivered.update({tp: records[-1].offset + 1 for tp, records in batches.items()})
                if self._delivered and time.monotonic() >= self._next_commit:
                    await self._commit(self._delivered)
            except KafkaError as error:
                log.warning("delivery consumer: %r", error)
                await asyncio.sleep(PUBLISH_RETRY_PAUSE_S)
            except Exception:
                log.exception("delivery consumer: unexpected error; going on")
                await asyncio.sleep(PUBLISH_RETRY_PAUSE_S)

    async def _deliver(self, records: Iterable[ConsumerRecord[bytes, bytes]]) -> None:
        oldest_ms = (time.time() - MAX_AGE_S) * 1000
        routes = [r for r in (route_of(record, oldest_ms) for record in records) if r is not None]
        for attempt in range(1, PUBLISH_ATTEMPTS + 1):
            try:
                DELIVERIES.labels("published").inc(await self._channels.publish(routes))
                return
            except (RedisError, OSError) as error:
                log.warning("publishing %d deliveries failed (attempt %d): %r", len(routes), attempt, error)
                await asyncio.sleep(PUBLISH_RETRY_PAUSE_S * attempt)
        DELIVERIES.labels("lost").inc(len(routes))
        log.error("dropped %d deliveries: Redis is unreachable (clients recover with sync)", len(routes))

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
