"""The Kafka topics of the system: names, keys, partitioning and retention, as data.

`streams.topics` creates them on the broker (`python -m streams create-topics`); the agents
(`streams.chat_agent`, `streams.user_agent`) read theirs by these names.
Every topic keyed by `chat_id` has the same partition count, so that Faust co-partitions the
commands of a chat with its events and with the tables that decide for it.
"""

from __future__ import annotations

from dataclasses import dataclass

FOREVER = -1
WEEK_MS = 7 * 24 * 3600 * 1000
DAY_MS = 24 * 3600 * 1000
HOUR_MS = 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str
    retention_ms: int
    doc: str
    partitioned: bool = True
    """False for topics with a single partition (per-instance reply topics)."""
    compacted: bool = False
    """Compacted, not deleted by age: the latest record of each key is kept, and a tombstone (a
    null value) makes compaction drop the key (`streams.topics` sets how soon)."""


USER_COMMANDS = TopicSpec(
    "user.commands",
    "folded username (register) or user_id (profile)",
    WEEK_MS,
    "registration and profile commands from the gateway",
)
USER_EVENTS = TopicSpec("user.events", "user_id", FOREVER, "every change of a user")
CHAT_COMMANDS = TopicSpec("chat.commands", "chat_id", WEEK_MS, "create chat, add and remove members, from the gateway")
MESSAGE_SEND = TopicSpec("message.send", "chat_id", WEEK_MS, "send, edit, delete and read commands from the gateway")
CHAT_EVENTS = TopicSpec("chat.events", "chat_id", FOREVER, "every change of a chat")
MESSAGE_EVENTS = TopicSpec("message.events", "chat_id", FOREVER, "every change of a message")
MESSAGE_DELIVERED = TopicSpec(
    "message.delivered",
    "chat_id (v1 records: recipient user_id)",
    DAY_MS,
    "one record per frame, naming its recipients, for the gateways to push; clients catch up with `sync`",
)
GATEWAY_REPLIES = TopicSpec(
    "gateway.replies",
    "correlation_id",
    HOUR_MS,
    "outcomes of commands, one topic per gateway instance (suffixed with its id)",
    partitioned=False,
)
DEAD_LETTERS = TopicSpec(
    "dead.letters",
    "consumer|topic|partition|offset of the skipped record",
    WEEK_MS,
    "records the agents and projections skipped, with why and their raw bytes; replays of them "
    "(`python -m streams dead-letters`). A week, as long as the command topics whose records it copies",
)
CONTENT_KEYS = TopicSpec(
    "content.keys",
    "key id (`message:<message_id>:<command_id>`, `profile:<user_id>`)",
    FOREVER,
    "the data keys that seal message texts and profiles (`schemas/content_keys.py`); a tombstone "
    "erases one, and compaction then drops it from the broker's disk (docs/erasure.md)",
    compacted=True,
)
USER_CREDENTIALS = TopicSpec(
    "user.credentials",
    "user_id",
    FOREVER,
    "each user's password hash (`schemas/credentials.py`), kept out of `user.events`: the latest "
    "record of a user logs in; a tombstone erases it, and compaction then drops it (docs/erasure.md)",
    compacted=True,
)
CONTENT_KEYS_DIRTY_RATIO = 0.01
"""`min.cleanable.dirty.ratio`: compact as soon as a little of the topic is shredded keys."""
CONTENT_KEYS_TOMBSTONE_MS = HOUR_MS
"""`delete.retention.ms`: how long a tombstone (a key id, nothing secret) stays for readers catching up."""

ALL: tuple[TopicSpec, ...] = (
    USER_COMMANDS,
    USER_EVENTS,
    CHAT_COMMANDS,
    MESSAGE_SEND,
    CHAT_EVENTS,
    MESSAGE_EVENTS,
    MESSAGE_DELIVERED,
    DEAD_LETTERS,
    CONTENT_KEYS,
    USER_CREDENTIALS,
)
EVENT_TOPICS: tuple[TopicSpec, ...] = (USER_EVENTS, CHAT_EVENTS, MESSAGE_EVENTS)
PROJECTED_TOPICS: tuple[TopicSpec, ...] = (*EVENT_TOPICS, USER_CREDENTIALS)
"""What the projections read, and so what a rebuild replays."""
COMMAND_TOPICS: tuple[TopicSpec, ...] = (USER_COMMANDS, CHAT_COMMANDS, MESSAGE_SEND)
"""What the gateway sends commands to."""


def reply_topic_name(instance_id: str) -> str:
    return f"{GATEWAY_REPLIES.name}.{instance_id}"
