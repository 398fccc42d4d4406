"""The gateway's side of crypto-shredding (docs/erasure.md): it seals every message text it sends
with a data key of that version, written to `content.keys` (and acknowledged by the broker)
before the command; and it opens the sealed texts that come back to it, in replies and in the
`message.delivered` frames it pushes, with the keys of the last `KEEP_S` seconds, tailed from
`content.keys` (older frames are not pushed: their recipients are resynced from the read models).

A profile (display name, bio) is sealed with one key per account, `profile:<user_id>`, made at
registration; a profile change seals with that same key, found in the tail or in the
projections' mirror of `content.keys` (`profile_key_choice`), never with a second record of it.

app[CONTENT_KEYS]   # set by `content_keys_ctx`, registered after the producer
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from aiohttp import web
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import Counter

from config.settings import GatewaySettings
from gateway.infra.read_store import Pool
from gateway.infra.resources import PRODUCER, SETTINGS
from runtime.key_tail import KeyTail
from runtime.sealing import KeyState, Unopened, new_key, open_sealed, seal
from schemas.content_keys import key_record
from schemas.sealed import (
    PROFILE_PURPOSES,
    MalformedSealed,
    ProfileField,
    Purpose,
    message_key_id,
    parse,
    profile_key_id,
)
from schemas.topics import CONTENT_KEYS as TOPIC

log = logging.getLogger(__name__)

KEEP_S = 300.0
"""How long a key is kept to open what comes back: above delivery's `MAX_AGE_S` (120 s)."""
WAIT_FOR_KEY_S = 2.0
"""How long an opening waits for the tail to bring a key made by another instance."""

UNOPENED = Counter(
    "gateway_unopened_texts_total",
    "Sealed texts the gateway could not open: shredded (erased meanwhile), or a fault",
    ["reason"],
)


CLOCK_SKEW = timedelta(seconds=60)
"""How far the gateway's clock (which stamps a profile key's record) may be ahead of the user
agent's (which stamps the registration): the mirror must have read this far past a registration
before a missing profile key is taken for an account of before sealing."""
MIRROR_OFFSETS = (
    "SELECT partition, next_offset FROM projection_offsets WHERE projection = 'content_keys' AND topic = $1"
)
MIRROR_KEY = "SELECT key FROM public.content_keys WHERE key_id = $1"

ProfileKeyChoice = bytes | Literal["plain", "erased", "not_known_yet"]
"""How a profile change is written: sealed with this key; plain (an account registered before
profiles were sealed has no key); refused, the account is erased; or not now (retry)."""


def is_sealed(text: object) -> bool:
    return isinstance(text, str) and text.startswith("sealed.")


def profile_key_choice(
    key_id: str, tail: Mapping[str, KeyState], mirror: Mapping[str, KeyState], mirror_complete: bool
) -> ProfileKeyChoice:
    """The rule of a profile change's key (docs/erasure.md), from what the gateway's tail of
    `content.keys` and the projections' mirror say of the account's key id.

    A shredded key anywhere wins (the account is erased: nothing more is written for it). A key
    is the one every version of the profile is sealed with. No key at all is an account of before
    sealing only if the mirror has read every record written up to its registration
    (`mirror_complete`); until then the key may just not have reached either, and writing the
    change plain would put a sealed account's profile in clear into the log."""
    states = [where[key_id] for where in (tail, mirror) if key_id in where]
    if any(state is None for state in states):
        return "erased"
    for state in states:
        if state is not None:
            return state
    return "plain" if mirror_complete else "not_known_yet"


class ContentKeys:
    def __init__(self, settings: GatewaySettings, producer: AIOKafkaProducer) -> None:
        self.topic = settings.topic(TOPIC.name)
        self.producer = producer
        self.recent = KeyTail.of(settings, self.topic, KEEP_S)
        """The keys of `content.keys` of the last `KEEP_S`, and those this instance made."""

    async def start(self) -> None:
        await self.recent.start()

    async def stop(self) -> None:
        await self.recent.stop()

    async def seal_message(
        self, message_id: uuid.UUID, owner_id: uuid.UUID, text: str
    ) -> tuple[str, asyncio.Future[Any]]:
        """`text` sealed under a fresh key of its own, and the broker's ack of the key.

        The key is handed to the producer at once, without waiting: the command that follows
        is then handed over before this task waits for anything, so a socket's commands keep
        the order of its frames (awaiting the key's ack first would let a later frame's command
        overtake). The key's record is ahead of the command's in the producer and lands with it
        or before; the caller awaits the ack before it answers."""
        key_id, key = message_key_id(message_id, uuid.uuid4()), new_key()
        record_key, value = key_record(key_id, key, owner_id, datetime.now(UTC))
        landed = await self.producer.send(self.topic, value, key=record_key)
        self.recent.remember(key_id, key)
        return seal(key, key_id, "message", message_id, text), landed

    async def open_message(self, message: dict[str, Any]) -> dict[str, Any]:
        """`message` (a Message as JSON) with its text opened; unchanged if plain. A text that
        cannot be opened becomes the empty string, and a fault is logged and counted."""
        text = message.get("text")
        if not is_sealed(text):
            return message
        assert isinstance(text, str)
        return {**message, "text": await self.open_field(text, "message", uuid.UUID(str(message.get("id"))))}

    async def seal_new_profile(self, user_id: uuid.UUID, display_name: str) -> tuple[str, asyncio.Future[Any]]:
        """A new account's profile key (`profile:<user_id>`, the only record it will ever have),
        handed to the producer without waiting, and `display_name` sealed with it; the caller
        awaits the ack (as `seal_message`'s does) before it answers."""
        key_id, key = profile_key_id(user_id), new_key()
        record_key, value = key_record(key_id, key, user_id, datetime.now(UTC))
        landed = await self.producer.send(self.topic, value, key=record_key)
        self.recent.remember(key_id, key)
        return seal_profile(key, user_id, "display_name", display_name), landed

    async def profile_key(self, db: Pool, user_id: uuid.UUID, registered_at: datetime) -> ProfileKeyChoice:
        """The existing account's key to seal a profile change with, by `profile_key_choice`:
        the tail, then the mirror; a key made moments ago by another instance is waited for."""
        key_id = profile_key_id(user_id)
        choice: ProfileKeyChoice = "not_known_yet"
        for attempt in range(2):
            if attempt:
                await self.recent.wait_for((key_id,), WAIT_FOR_KEY_S)
            tail = self.recent.known((key_id,))
            row = await db.fetchrow(MIRROR_KEY, key_id)
            mirror = {key_id: None if row["key"] is None else bytes(row["key"])} if row else {}
            complete = not tail and not mirror and await self.mirror_read_past(db, registered_at)
            choice = profile_key_choice(key_id, tail, mirror, complete)
            if choice != "not_known_yet":
                return choice
        return choice

    async def mirror_read_past(self, db: Pool, registered_at: datetime) -> bool:
        """Whether the mirror has applied every record of `content.keys` stamped before
        `registered_at` (and `CLOCK_SKEW`): each partition's `next_offset` in `projection_offsets`
        is at the first record stamped after it, or at the end. False when the broker cannot say."""
        consumer = self.recent.consumer
        partitions = consumer.partitions_for_topic(self.topic) or set()
        if not partitions:
            return False
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        stamp = int((registered_at + CLOCK_SKEW).timestamp() * 1000)
        try:
            after = await consumer.offsets_for_times(dict.fromkeys(tps, stamp))
            ends = await consumer.end_offsets(tps)
            starts = await consumer.beginning_offsets(tps)
        except KafkaError as error:
            log.warning("cannot read the offsets of %s: %r", self.topic, error)
            return False
        read = {r["partition"]: r["next_offset"] for r in await db.fetch(MIRROR_OFFSETS, self.topic)}
        return all(
            max(read.get(tp.partition, 0), starts[tp]) >= (found.offset if (found := after.get(tp)) else ends[tp])
            for tp in tps
        )

    async def open_user(self, user: dict[str, Any]) -> dict[str, Any]:
        """`user` (a User as JSON, as a reply carries it) with its sealed fields opened with the
        keys this gateway holds; a field that cannot be opened becomes the empty string."""
        opened = dict(user)
        for field, purpose in PROFILE_PURPOSES.items():
            text = user.get(field)
            if is_sealed(text):
                assert isinstance(text, str)
                opened[field] = await self.open_field(text, purpose, uuid.UUID(str(user.get("id"))))
        return opened

    async def open_field(self, token: str, purpose: Purpose, subject_id: uuid.UUID) -> str:
        """The text `token` seals, with a key this gateway made or tailed (waited for a moment if
        not there yet); else the empty string, and a fault (not an erasure) is logged."""
        try:
            key_ids: tuple[str, ...] = (parse(token).key_id,)
        except MalformedSealed:
            key_ids = ()
        known = self.recent.known(key_ids)
        if len(known) < len(key_ids):
            await self.recent.wait_for(key_ids, WAIT_FOR_KEY_S)
            known = self.recent.known(key_ids)
        opened = open_sealed(token, purpose, subject_id, known)
        if isinstance(opened, Unopened):
            UNOPENED.labels(opened.reason).inc()
            if not opened.erased:
                log.error("cannot open the %s of %s: %s", purpose, subject_id, opened.reason)
            return ""
        return opened


def seal_profile(key: bytes, user_id: uuid.UUID, field: ProfileField, text: str) -> str:
    """A profile field sealed with the account's key, bound to the field and the user."""
    return seal(key, profile_key_id(user_id), PROFILE_PURPOSES[field], user_id, text)


CONTENT_KEYS = web.AppKey("content_keys", ContentKeys)


async def content_keys_ctx(app: web.Application) -> AsyncIterator[None]:
    keys = ContentKeys(app[SETTINGS], app[PRODUCER])
    await keys.start()
    app[CONTENT_KEYS] = keys
    yield
    await keys.stop()
