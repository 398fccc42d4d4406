"""A measurement, not a speed test: 1,000 messages between two users on different gateway
instances, and how long each took from `message.send` to the other user's `message.new` (and to
the sender's `message.ack`). It prints the median and the 99th percentile; it asserts only that
every message arrived, once and in order.

    .venv/bin/pytest -q -s tests/e2e/test_ws_latency.py

Each user sends at `RATE_PER_USER` messages a second, open loop (the next send does not wait for
the last one's answer), under the gateway's per-user frame limit, so the numbers are those of a
steady conversation, not of a client waiting on itself.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from tests.e2e.gateway_harness import Client, GatewaySystem, module_system

pytestmark = pytest.mark.e2e

MESSAGES = 1000
RATE_PER_USER = 25.0
"""Under the gateway's 40 frames/s per user, with room for the frames a real client adds."""


@pytest.fixture(scope="module")
async def system(
    topic_prefix: str, tmp_path_factory: pytest.TempPathFactory, jwt_secret: str, template_database: str
) -> AsyncIterator[GatewaySystem]:
    async with module_system("wslat", topic_prefix, tmp_path_factory, jwt_secret, template_database) as system:
        yield system


class Timings:
    def __init__(self) -> None:
        self.sent: dict[str, float] = {}
        self.delivered: dict[str, float] = {}
        self.acked: dict[str, float] = {}
        self.seqs: dict[uuid.UUID, list[int]] = {}


async def send_paced(client: Client, chat_id: uuid.UUID, count: int, timings: Timings) -> None:
    interval = 1.0 / RATE_PER_USER
    start = time.perf_counter()
    for i in range(count):
        client_msg_id = f"{client.label}-{i}"
        timings.sent[client_msg_id] = time.perf_counter()
        await client.send(
            {"type": "message.send", "chat_id": str(chat_id), "client_msg_id": client_msg_id, "text": f"m{i}"}
        )
        await asyncio.sleep(max(0.0, start + (i + 1) * interval - time.perf_counter()))


async def read_until_done(client: Client, acks: int, news: int, timings: Timings) -> None:
    seqs = timings.seqs.setdefault(client.user_id, [])
    while acks or news:
        frame = await client.receive(timeout=30)
        now = time.perf_counter()
        if frame["type"] == "message.ack":
            timings.acked[frame["client_msg_id"]] = now
            acks -= 1
        elif frame["type"] == "message.new":
            timings.delivered[frame["message"]["client_msg_id"]] = now
            seqs.append(frame["message"]["seq"])
            news -= 1
        elif frame["type"] == "error":
            raise AssertionError(f"{client.label}: {frame}")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def report(name: str, seconds: list[float]) -> str:
    ms = [s * 1000 for s in seconds]
    return (
        f"{name}: n={len(ms)} median={statistics.median(ms):.1f} ms p90={percentile(ms, 90):.1f} ms "
        f"p99={percentile(ms, 99):.1f} ms max={max(ms):.1f} ms"
    )


async def test_measure_send_to_delivery_latency_across_instances(
    system: GatewaySystem, capsys: pytest.CaptureFixture[str]
) -> None:
    alice_id, bob_id = uuid.uuid4(), uuid.uuid4()
    chat = await system.create_chat(alice_id, [bob_id], direct=True)
    alice = await system.connect(system.gateways[0], alice_id, label="alice")
    bob = await system.connect(system.gateways[1], bob_id, label="bob")
    half = MESSAGES // 2
    timings = Timings()
    started = time.perf_counter()
    await asyncio.gather(
        send_paced(alice, chat, half, timings),
        send_paced(bob, chat, half, timings),
        read_until_done(alice, half, half, timings),
        read_until_done(bob, half, half, timings),
    )
    elapsed = time.perf_counter() - started

    assert set(timings.delivered) == set(timings.sent) == set(timings.acked)
    for seqs in timings.seqs.values():
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), "message.new in seq order, once each"
    delivery = [timings.delivered[k] - timings.sent[k] for k in timings.sent]
    ack = [timings.acked[k] - timings.sent[k] for k in timings.sent]
    with capsys.disabled():
        print(
            f"\n{MESSAGES} messages, alice on {system.gateways[0].instance_id}, bob on "
            f"{system.gateways[1].instance_id}, {2 * RATE_PER_USER:.0f} msg/s, {elapsed:.1f} s"
        )
        print(report("send -> message.new (other user)", delivery))
        print(report("send -> message.ack (sender)    ", ack))
    await asyncio.gather(alice.close(), bob.close())
