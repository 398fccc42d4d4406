"""The faults, one at a time, each injected in the middle of the load. A fault only breaks (and,
for a service, brings the service back as its own restart would); it never restarts one of the
system's processes: that is the supervisor's job, and the suite counts when an operator had to."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from tests.chaos.stack import PrivateStack

KAFKA_DOWN_S = 5.0
"""How long the single broker stays dead before it is started again."""
CLUSTER_NODE_DOWN_S = 15.0
"""How long one node of the cluster stays dead: longer than its 6 s session timeout, so its
partitions move to the others and the system must go on without it."""
REDIS_DOWN_S = 1.0


@dataclass(frozen=True)
class Fault:
    name: str
    what: str
    inject: Callable[[PrivateStack], None]
    cluster: bool = False
    """Needs the 3-node Kafka cluster (the full form only)."""


def kill_program(program: str) -> Callable[[PrivateStack], None]:
    def inject(stack: PrivateStack) -> None:
        pid = stack.kill_program(program)
        stack.note(f"kill -9 {program} (pid {pid})")

    return inject


def restart_postgres(stack: PrivateStack) -> None:
    stack.note("pg_ctl -m immediate restart")
    stack.restart_postgres()


def restart_redis(stack: PrivateStack) -> None:
    stack.note("redis-cli shutdown nosave, then scripts/services up redis")
    stack.stop_redis()
    time.sleep(REDIS_DOWN_S)
    stack.services_up("redis")


def kill_kafka_node(node: int, down_s: float) -> Callable[[PrivateStack], None]:
    def inject(stack: PrivateStack) -> None:
        stack.note(f"kill -9 Kafka node {node}; {down_s:.0f} s later scripts/services up kafka")
        stack.kill_kafka_node(node)
        time.sleep(down_s)
        stack.kafka_up()

    return inject


ALL = (
    Fault("kill -9 streams worker", "the deciding worker dies; its supervisor restarts it", kill_program("streams")),
    Fault(
        "kill -9 projections worker",
        "the read-model writer dies; its supervisor restarts it",
        kill_program("projections"),
    ),
    Fault("kill -9 gateway", "every socket drops; the supervisor restarts the gateway", kill_program("gateway")),
    Fault("PostgreSQL restart", "`pg_ctl -m immediate restart`: every connection cut", restart_postgres),
    Fault(
        "Redis restart",
        f"shutdown nosave, {REDIS_DOWN_S:.0f} s down, started again: sessions and refresh tokens lost",
        restart_redis,
    ),
    Fault(
        "Kafka broker kill -9",
        f"the only broker killed, {KAFKA_DOWN_S:.0f} s down, started again",
        kill_kafka_node(1, KAFKA_DOWN_S),
    ),
    Fault(
        "Kafka cluster: kill -9 one of 3",
        f"node 1 of 3 killed, {CLUSTER_NODE_DOWN_S:.0f} s down, started again",
        kill_kafka_node(1, CLUSTER_NODE_DOWN_S),
        cluster=True,
    ),
)


def by_name(names: list[str]) -> list[Fault]:
    """The faults whose names contain any of `names` (case-insensitive); all when empty."""
    if not names:
        return list(ALL)
    wanted = [n.lower() for n in names]
    return [f for f in ALL if any(w in f.name.lower() for w in wanted)]
