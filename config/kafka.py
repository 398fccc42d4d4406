"""How the project's topics are replicated: decided once, from the size of the Kafka cluster.

Every topic the project creates (the catalogue, the gateways' reply topics, Faust's changelogs)
gets a replication factor of min(3, brokers in the cluster's metadata). With three copies,
`min.insync.replicas=2` lets an `acks=all` write go on while one broker is down, and still means
two brokers have it; with fewer copies it must be 1, or one broker down would stop every write.
A broker that is down when a topic is created is not in the metadata, so the topic gets the
factor the live brokers can hold rather than failing to be created. A cluster that has just
started may not list all its brokers yet (each registers with the controllers on its own), so
the count is awaited, for a while, up to the number of addresses the bootstrap list names.

Every Kafka client of the project is built from `client_options`: the broker refuses a
connection that does not log in (SASL on every listener), so no client is made without it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from config.settings import CommonSettings

MAX_REPLICATION_FACTOR = 3
MIN_INSYNC_WITH_FULL_REPLICATION = 2
METADATA_ATTEMPTS = 5
"""The admin client asks a random broker of its metadata, which may be one just killed and not
yet fenced (a few seconds): another attempt most likely asks a live one."""
METADATA_RETRY_S = 0.3
BROKERS_WAIT_S = 10.0
"""How long to wait for as many brokers as the bootstrap list names (a cluster starting up)."""

log = logging.getLogger(__name__)


SECURITY_PROTOCOL = "SASL_PLAINTEXT"
"""SASL without TLS: the brokers listen on loopback (or a compose network) only."""


def client_options(settings: CommonSettings) -> dict[str, Any]:
    """The bootstrap list and the login of an aiokafka producer, consumer or admin client."""
    return {
        "bootstrap_servers": settings.broker_list,
        "security_protocol": SECURITY_PROTOCOL,
        "sasl_mechanism": settings.kafka_sasl_mechanism,
        "sasl_plain_username": settings.kafka_username,
        "sasl_plain_password": settings.kafka_password.get_secret_value(),
    }


@dataclass(frozen=True)
class Replication:
    factor: int
    min_insync: int

    def topic_configs(self) -> dict[str, str]:
        """The per-topic settings for the topics whose writes must survive a broker's loss."""
        return {"min.insync.replicas": str(self.min_insync)}


def replication_for(brokers: int) -> Replication:
    if brokers < 1:
        raise ValueError(f"a Kafka cluster has at least one broker, not {brokers}")
    factor = min(MAX_REPLICATION_FACTOR, brokers)
    min_insync = MIN_INSYNC_WITH_FULL_REPLICATION if factor >= MAX_REPLICATION_FACTOR else 1
    return Replication(factor, min_insync)


async def broker_count(admin: AIOKafkaAdminClient) -> int:
    """The brokers in the cluster's metadata, as a started admin client sees them."""
    for _ in range(METADATA_ATTEMPTS - 1):
        try:
            return await _brokers_in_metadata(admin)
        except KafkaError:
            await asyncio.sleep(METADATA_RETRY_S)
    return await _brokers_in_metadata(admin)


async def _brokers_in_metadata(admin: AIOKafkaAdminClient) -> int:
    cluster = await admin.describe_cluster()
    return len(cluster["brokers"])


async def brokers_at_least(admin: AIOKafkaAdminClient, expected: int, wait: float = BROKERS_WAIT_S) -> int:
    """The brokers in the metadata, once there are `expected` of them or `wait` has passed."""
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        seen = await broker_count(admin)
        if seen >= expected:
            return seen
        if asyncio.get_running_loop().time() >= deadline:
            log.warning("the cluster lists %d brokers, not the %d the bootstrap list names; replicating for %d", seen, expected, seen)
            return seen
        await asyncio.sleep(METADATA_RETRY_S)


async def cluster_replication(admin: AIOKafkaAdminClient, bootstrap_servers: list[str]) -> Replication:
    return replication_for(await brokers_at_least(admin, len(bootstrap_servers)))


async def replication_of(settings: CommonSettings) -> Replication:
    """`cluster_replication` for a caller that holds no admin client."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        return await cluster_replication(admin, settings.broker_list)
    finally:
        await admin.close()
