"""How many brokers the Kafka cluster has, for the replication rule of `config.kafka`.

A broker that is down when a topic is created is not in the metadata, so the topic gets the
factor the live brokers can hold rather than failing to be created. A cluster that has just
started may not list all its brokers yet (each registers with the controllers on its own), so
the count is awaited, for a while, up to the number of addresses the bootstrap list names.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from config.kafka import Replication, client_options, replication_for
from config.settings import CommonSettings
from runtime.retry import GaveUp, retrying

METADATA_ATTEMPTS = 5
"""The admin client asks a random broker of its metadata, which may be one just killed and not
yet fenced (a few seconds): another attempt most likely asks a live one."""
METADATA_RETRY_S = 0.3
BROKERS_WAIT_S = 10.0
"""How long to wait for as many brokers as the bootstrap list names (a cluster starting up)."""

log = logging.getLogger(__name__)


async def broker_count(admin: AIOKafkaAdminClient) -> int:
    """The brokers in the cluster's metadata, as a started admin client sees them."""
    try:
        return await retrying(
            lambda: _brokers_in_metadata(admin),
            what="reading the cluster's metadata",
            attempts=METADATA_ATTEMPTS,
            first_pause_s=METADATA_RETRY_S,
            retry_on=(KafkaError,),
        )
    except GaveUp as error:
        raise error.__cause__ or error from None


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
            log.warning(
                "the cluster lists %d brokers, not the %d the bootstrap list names; replicating for %d",
                seen,
                expected,
                seen,
            )
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
