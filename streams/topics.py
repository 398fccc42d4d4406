"""Creation of the system's topics on the broker, from the catalogue in `schemas.topics`
(`python -m streams create-topics`; idempotent: existing topics are left as they are).

Replication follows the cluster's size (`config.kafka`); the commands and the events, the topics
whose loss no one could repair (and the dead letters), also carry their `min.insync.replicas` explicitly.
"""

from __future__ import annotations

import logging
from typing import Any, cast

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from config.kafka import Replication, client_options
from config.settings import CommonSettings
from runtime.kafka_cluster import cluster_replication
from schemas.topics import (
    ALL,
    CHAT_COMMANDS,
    CONTENT_KEYS,
    CONTENT_KEYS_DIRTY_RATIO,
    CONTENT_KEYS_TOMBSTONE_MS,
    DEAD_LETTERS,
    EVENT_TOPICS,
    MESSAGE_SEND,
    USER_COMMANDS,
    USER_CREDENTIALS,
    TopicSpec,
)

log = logging.getLogger(__name__)

TOPIC_ALREADY_EXISTS = 36
MUST_SURVIVE_A_BROKER: frozenset[TopicSpec] = frozenset(
    (*EVENT_TOPICS, USER_COMMANDS, CHAT_COMMANDS, MESSAGE_SEND, DEAD_LETTERS, CONTENT_KEYS, USER_CREDENTIALS)
)
"""The dead letters too: a skipped command's dead letter is the only copy left once its topic's
retention passed; the content keys: a lost key is a lost text; and the credentials: a lost one is
an account that cannot log in."""


def new_topic(settings: CommonSettings, spec: TopicSpec, replication: Replication) -> NewTopic:
    partitions = settings.topic_partitions if spec.partitioned else 1
    configs = (
        compaction(settings) if spec.compacted else {"retention.ms": str(spec.retention_ms), "cleanup.policy": "delete"}
    )
    if spec in MUST_SURVIVE_A_BROKER:
        configs.update(replication.topic_configs())
    return NewTopic(settings.topic(spec.name), partitions, replication.factor, topic_configs=configs)


def compaction(settings: CommonSettings) -> dict[str, str]:
    """How soon a compacted topic (`content.keys`, `user.credentials`) forgets a key after its
    tombstone or a newer record (docs/erasure.md): the active
    segment, never compacted, rolls after `CONTENT_KEYS_COMPACTION_MS`, and a closed segment
    holding a shredded key is compacted within as long again."""
    lag = str(settings.content_keys_compaction_ms)
    return {
        "cleanup.policy": "compact",
        "segment.ms": lag,
        "max.compaction.lag.ms": lag,
        "min.cleanable.dirty.ratio": str(CONTENT_KEYS_DIRTY_RATIO),
        "delete.retention.ms": str(CONTENT_KEYS_TOMBSTONE_MS),
    }


async def create_topics(settings: CommonSettings, specs: tuple[TopicSpec, ...] = ALL) -> list[str]:
    """Create every topic of `specs` that is missing; return the names created."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        replication = await cluster_replication(admin, settings.broker_list)
        response = await admin.create_topics([new_topic(settings, s, replication) for s in specs])
    finally:
        await admin.close()
    created = []
    for name, code, message in cast(Any, response).topic_errors:  # aiokafka builds it at run time
        if code == 0:
            created.append(name)
        elif code != TOPIC_ALREADY_EXISTS:
            raise RuntimeError(f"cannot create topic {name}: {message} (error {code})")
    return created
