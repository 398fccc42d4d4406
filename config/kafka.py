"""How the project's topics are replicated: decided once, from the size of the Kafka cluster.

Every topic the project creates (the catalogue, the gateways' reply topics, Faust's changelogs)
gets a replication factor of min(3, brokers in the cluster's metadata). With three copies,
`min.insync.replicas=2` lets an `acks=all` write go on while one broker is down, and still means
two brokers have it; with fewer copies it must be 1, or one broker down would stop every write.
The count of brokers is read from the cluster (`runtime.kafka_cluster`).

Every Kafka client of the project is built from `client_options`: the broker refuses a
connection that does not log in (SASL on every listener), so no client is made without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from config.settings import CommonSettings

MAX_REPLICATION_FACTOR = 3
MIN_INSYNC_WITH_FULL_REPLICATION = 2

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
