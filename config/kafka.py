"""How the project's topics are replicated: decided once, from the size of the Kafka cluster.

Every topic the project creates (the catalogue, the gateways' reply topics, Faust's changelogs)
gets a replication factor of min(3, brokers in the cluster's metadata). With three copies,
`min.insync.replicas=2` lets an `acks=all` write go on while one broker is down, and still means
two brokers have it; with fewer copies it must be 1, or one broker down would stop every write.
A broker that is down when a topic is created is not in the metadata, so the topic gets the
factor the live brokers can hold rather than failing to be created.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

MAX_REPLICATION_FACTOR = 3
MIN_INSYNC_WITH_FULL_REPLICATION = 2
METADATA_ATTEMPTS = 5
"""The admin client asks a random broker of its metadata, which may be one just killed and not
yet fenced (a few seconds): another attempt most likely asks a live one."""
METADATA_RETRY_S = 0.3


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


async def cluster_replication(admin: AIOKafkaAdminClient) -> Replication:
    return replication_for(await broker_count(admin))


async def replication_of(bootstrap_servers: list[str]) -> Replication:
    """`cluster_replication` for a caller that holds no admin client."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        return await cluster_replication(admin)
    finally:
        await admin.close()
