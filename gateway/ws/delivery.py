"""The `message.delivered` consumer: every gateway instance joins one consumer group, so each
record (a frame and its recipients, keyed by the chat's id; or, left by an older streams worker,
a frame for one recipient keyed by that user's id) is read by exactly one instance, which
PUBLISHes the frame to each recipient's channel (`gateway.ws.routing`). The instances holding a
user's sockets receive it from Redis. See docs/websocket.md, "How delivery scales".

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
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from redis.exceptions import RedisError

from config.kafka import client_options
from config.settings import GatewaySettings
from gateway.infra.content_keys import ContentKeys, is_sealed
from gateway.infra.healing import ConnectionState, reconnect_backoff
from gateway.ws.metrics import DELIVERIES, DELIVERY_PARTITIONS
from gateway.ws.routing import Route, UserChannels
from schemas import topics
from schemas.commands import DeliveryBatch, decode_delivery
from schemas.frames import encode_frame, presence_frame

log = logging.getLogger(__name__)

GROUP_NAME = "gateway-delivery"
BATCH_MAX = 1000
POLL_MS = 200
PUBLISH_MAX = 1000
"""PUBLISHes sent in one pipelined round trip at most: a batch of records naming hundreds of
recipients each is published in slices, so that no pipeline holds a group's worth of copies of
every frame at once (the offsets are still committed only after the whole batch)."""
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


def decoded(record: ConsumerRecord[bytes, bytes]) -> DeliveryBatch | None:
    """The recipients and frame of a record; None for one that is no delivery (counted, skipped)."""
    try:
        return decode_delivery(record.value or b"")
    except ValueError:
        DELIVERIES.labels("malformed").inc()
        return None


def routes_of(delivery: DeliveryBatch | None, timestamp_ms: int, oldest_ms: float) -> list[Route]:
    """The routes of one record's `delivery`, one per recipient, the frame encoded once: its frame,
    or a resync of each recipient for a record stamped before `oldest_ms`; none for a record that
    is no delivery."""
    if delivery is None:
        return []
    if timestamp_ms < oldest_ms:
        DELIVERIES.labels("stale").inc(len(delivery.recipient_ids))
        return [Route(recipient_id, "", resync=True) for recipient_id in delivery.recipient_ids]
    chat_id, seq, sender_id, client_msg_id = message_position(delivery.frame)
    text = encode_frame(delivery.frame)
    skip_connection, skip_user_id = delivery.skip_connection, delivery.skip_user_id
    return [
        Route(
            recipient_id,
            text,
            skip_connection if recipient_id == skip_user_id else None,
            chat_id,
            seq,
            client_msg_id if recipient_id == sender_id else None,
        )
        for recipient_id in delivery.recipient_ids
    ]


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


def new_partners(frame: dict[str, Any], recipient_id: str) -> list[str]:
    """The users whose presence the recipient learns with this frame (*addition*): the members of
    a chat it was just given (`chat.updated`), a member just added (`chat.member_added`). Who was
    already a partner is told again, which changes nothing."""
    if frame.get("type") == "chat.updated" and isinstance(frame.get("chat"), dict):
        members = frame["chat"].get("members") or []
        found = [str(m.get("user_id")) for m in members if isinstance(m, dict)]
    elif frame.get("type") == "chat.member_added":
        found = [str(frame.get("user_id"))]
    else:
        return []
    return [user_id for user_id in found if user_id != recipient_id]


def without_repeated_resyncs(routes: Iterable[Route | None]) -> Iterator[Route]:
    """The routes in order, with one resync per user at most (a stale backlog is one per record),
    made as they are taken."""
    resynced: set[str] = set()
    for route in routes:
        if route is None or (route.resync and route.user_id in resynced):
            continue
        if route.resync:
            resynced.add(route.user_id)
        yield route


class DeliveryConsumer:
    def __init__(
        self,
        settings: GatewaySettings,
        channels: UserChannels,
        online_among: Callable[[list[str]], Awaitable[list[str]]],
        texts: ContentKeys | None = None,
    ) -> None:
        self._settings = settings
        self._texts = texts
        """Opens the sealed texts of the frames (None: they are pushed as they are)."""
        self._channels = channels
        self._online_among = online_among
        """Which of some users are online now (`SessionStore.online_among`)."""
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
        pairs = [(record, await self._opened(decoded(record))) for record in records]
        routes = without_repeated_resyncs(
            route for record, delivery in pairs for route in routes_of(delivery, record.timestamp, oldest_ms)
        )
        while chunk := list(itertools.islice(routes, PUBLISH_MAX)):
            await self._publish(chunk)
        await self._introduce([delivery for _, delivery in pairs if delivery is not None])

    async def _opened(self, delivery: DeliveryBatch | None) -> DeliveryBatch | None:
        """The delivery with its message's text opened (docs/erasure.md)."""
        if delivery is None or self._texts is None:
            return delivery
        message = delivery.frame.get("message")
        if not isinstance(message, dict) or not is_sealed(message.get("text")):
            return delivery
        return delivery._replace(frame={**delivery.frame, "message": await self._texts.open_message(message)})

    async def _publish(self, routes: list[Route]) -> None:
        """PUBLISH `routes` in one round trip; while Redis cannot take them, retry with backoff."""
        backoff = reconnect_backoff()
        while True:
            try:
                DELIVERIES.labels("published").inc(await self._channels.publish(routes))
                return
            except (RedisError, OSError) as error:
                log.warning("publishing %d deliveries failed: %r; retrying", len(routes), error)
                await asyncio.sleep(backoff.next_pause())

    async def _introduce(self, deliveries: list[DeliveryBatch]) -> None:
        """After a chat change, tell its recipients which of their new partners are online (a
        presence change announced before they shared the chat went to others). Best effort: a
        failure is logged, the partners' next changes come as usual."""
        wanted = [
            (recipient_id, users)
            for d in deliveries
            for recipient_id in d.recipient_ids
            if (users := new_partners(d.frame, recipient_id))
        ]
        if not wanted:
            return
        try:
            online = set(await self._online_among(sorted({u for _, users in wanted for u in users})))
            await self._channels.publish(
                Route(recipient, encode_frame(presence_frame(user_id, True)))
                for recipient, users in wanted
                for user_id in users
                if user_id in online
            )
        except (RedisError, OSError) as error:
            log.warning("cannot tell new partners who is online: %r", error)

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
