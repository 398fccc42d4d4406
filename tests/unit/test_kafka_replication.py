"""The one rule for replication: min(3, brokers) copies, and min ISR 2 only with three copies."""

from __future__ import annotations

import pytest

from config.kafka import Replication, replication_for
from config.settings import CommonSettings
from runtime.kafka_cluster import brokers_at_least
from schemas import topics
from streams.topics import new_topic


@pytest.mark.parametrize(
    ("brokers", "factor", "min_insync"),
    [(1, 1, 1), (2, 2, 1), (3, 3, 2), (5, 3, 2)],
)
def test_replication_follows_the_cluster_size(brokers: int, factor: int, min_insync: int) -> None:
    assert replication_for(brokers) == Replication(factor, min_insync)


def test_a_cluster_without_brokers_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one broker"):
        replication_for(0)


def test_commands_and_events_carry_their_min_isr_and_every_topic_the_factor() -> None:
    settings = CommonSettings(topic_prefix="p.", topic_partitions=4)
    durable = {
        *topics.EVENT_TOPICS,
        topics.USER_COMMANDS,
        topics.CHAT_COMMANDS,
        topics.MESSAGE_SEND,
        topics.DEAD_LETTERS,
        topics.CONTENT_KEYS,
        topics.USER_CREDENTIALS,
    }
    for spec in topics.ALL:
        topic = new_topic(settings, spec, replication_for(3))
        assert topic.replication_factor == 3, spec.name
        expected = "2" if spec in durable else None
        assert topic.topic_configs.get("min.insync.replicas") == expected, spec.name


def test_one_broker_keeps_min_isr_one() -> None:
    topic = new_topic(CommonSettings(), topics.MESSAGE_EVENTS, replication_for(1))
    assert (topic.replication_factor, topic.topic_configs["min.insync.replicas"]) == (1, "1")


class ClusterStartingUp:
    """An admin client's view of a cluster whose brokers register one after another."""

    def __init__(self, counts: list[int]) -> None:
        self.counts = counts

    async def describe_cluster(self) -> dict[str, list[object]]:
        count = self.counts.pop(0) if len(self.counts) > 1 else self.counts[0]
        return {"brokers": [object()] * count}


async def test_the_broker_count_waits_for_as_many_brokers_as_the_bootstrap_list_names() -> None:
    assert await brokers_at_least(ClusterStartingUp([1, 2, 3]), expected=3) == 3  # type: ignore[arg-type]


async def test_a_cluster_that_stays_short_of_the_bootstrap_list_is_replicated_for_what_it_has() -> None:
    assert await brokers_at_least(ClusterStartingUp([2]), expected=3, wait=0.5) == 2  # type: ignore[arg-type]
