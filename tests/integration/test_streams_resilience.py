"""Crashes, rebalances and bad records: nothing acknowledged is lost or written twice."""

from __future__ import annotations

import asyncio
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import asyncpg
import pytest

from gateway.infra.command_bus import CommandTimeout
from schemas import topics
from schemas.commands import CreateChat, MessageResult, SendMessage
from schemas.events import Event
from tests.e2e.workers import start_worker, worker_env
from tests.integration.streams_harness import StreamsSystem, streams_system
from tests.kafka_tools import eventually, read_events, read_topic

pytestmark = pytest.mark.integration


async def send_until_acked(
    system: StreamsSystem, chat_id: uuid.UUID, sender: uuid.UUID, cmid: str
) -> dict[str, object]:
    """What a client does: send, and on a timeout send the same client_msg_id again."""
    body = SendMessage(chat_id=chat_id, client_msg_id=cmid, text=f"text {cmid}")
    for _ in range(30):
        try:
            reply = await system.bus.ask(topics.MESSAGE_SEND, str(chat_id), body, sender, timeout=3.0)
        except CommandTimeout:
            continue
        assert reply.ok, reply
        return reply.result_as(MessageResult).message.model_dump(mode="json")
    raise AssertionError(f"{cmid} never acknowledged")


async def new_group(system: StreamsSystem, owner: uuid.UUID, members: list[uuid.UUID]) -> uuid.UUID:
    chat_id = uuid.uuid4()
    body = CreateChat(chat_id=chat_id, type="group", title="g", member_ids=members)
    for _ in range(30):
        try:
            reply = await system.bus.ask(topics.CHAT_COMMANDS, str(chat_id), body, owner, timeout=3.0)
            assert reply.ok
            return chat_id
        except CommandTimeout:
            continue
    raise AssertionError("chat never created")


async def flow(
    system: StreamsSystem, chats: list[uuid.UUID], sender: uuid.UUID, count: int, acked: list[dict[str, object]]
) -> None:
    window = asyncio.Semaphore(20)

    async def one(i: int) -> None:
        async with window:
            acked.append(await send_until_acked(system, chats[i % len(chats)], sender, f"m{i}"))

    await asyncio.gather(*(one(i) for i in range(count)))


def assert_exactly_once_and_gapless(
    events: list[Event], chats: list[uuid.UUID], acked: list[dict[str, object]]
) -> None:
    sent = [e for e in events if e.type == "message.sent" and e.aggregate_id in chats]
    ids = Counter(str(e.payload.message_id) for e in sent)  # type: ignore[attr-defined]
    assert [m for m, n in ids.items() if n > 1] == []
    assert {str(m["id"]) for m in acked} <= set(ids)
    for chat_id in chats:
        seqs = sorted(e.payload.seq for e in sent if e.aggregate_id == chat_id)  # type: ignore[attr-defined]
        assert seqs == list(range(1, len(seqs) + 1)), chat_id


async def test_kill_9_while_messages_flow_loses_and_doubles_nothing(
    topic_prefix: str, tmp_path: Path, jwt_secret: str, database_url: str
) -> None:
    prefix = f"{topic_prefix}crash."
    async with streams_system(prefix, tmp_path, jwt_secret, database_url=database_url) as system:
        worker = system.start_worker()
        system.workers.append(
            start_worker("projections", worker_env(prefix, database_url, 4, tmp_path / "faust"), tmp_path)
        )
        alice = uuid.uuid4()
        chats = [await new_group(system, alice, [uuid.uuid4()]) for _ in range(3)]
        acked: list[dict[str, object]] = []
        sending = asyncio.create_task(flow(system, chats, alice, 900, acked))
        while len(acked) < 200:
            await asyncio.sleep(0.01)
        worker.kill9()
        system.start_worker(wait=False)
        await asyncio.wait_for(sending, 240)
        assert len(acked) == 900
        events = await read_events(system.settings, system.settings.topic("message.events"))
        assert_exactly_once_and_gapless(events, chats, acked)
        assert len([e for e in events if e.type == "message.sent"]) == 900
        rows = await eventually(lambda: read_model_messages(database_url, 900), timeout=60)
        assert sorted(str(m["id"]) for m in acked) == sorted(rows)


async def read_model_messages(database_url: str, expected: int) -> list[str] | None:
    """The ids of the messages in the read model, once there are `expected` of them."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT id::text FROM messages")
    finally:
        await conn.close()
    return [r["id"] for r in rows] if len(rows) >= expected else None


async def test_two_workers_and_a_rebalance_mid_flow_give_the_same_result(
    topic_prefix: str, tmp_path: Path, jwt_secret: str
) -> None:
    async with streams_system(f"{topic_prefix}scale.", tmp_path, jwt_secret) as system:
        first = system.start_worker()
        alice = uuid.uuid4()
        chats = [await new_group(system, alice, [uuid.uuid4()]) for _ in range(8)]
        acked: list[dict[str, object]] = []
        sending = asyncio.create_task(flow(system, chats, alice, 1200, acked))
        while len(acked) < 300:
            await asyncio.sleep(0.01)
        system.start_worker(wait=False)  # scale out: partitions move while messages flow
        while len(acked) < 800:
            await asyncio.sleep(0.01)
        first.stop()  # and scale in again
        await asyncio.wait_for(sending, 240)
        events = await read_events(system.settings, system.settings.topic("message.events"))
        assert_exactly_once_and_gapless(events, chats, acked)
        assert len([e for e in events if e.type == "message.sent"]) == 1200


def read_url(url: str) -> str:
    with urllib.request.urlopen(url) as response:
        return str(response.read().decode())


async def test_malformed_and_unknown_records_are_skipped_counted_and_followed(
    topic_prefix: str, tmp_path: Path, jwt_secret: str
) -> None:
    async with streams_system(f"{topic_prefix}bad.", tmp_path, jwt_secret, partitions=1) as system:
        worker = system.start_worker()
        alice = uuid.uuid4()
        chat_id = await new_group(system, alice, [uuid.uuid4()])
        topic = system.settings.topic("message.send")
        await system.producer.send_and_wait(topic, b"{not json", key=str(chat_id).encode())
        await system.producer.send_and_wait(
            topic, b'{"command_id": "x", "body": {"kind": "chat.explode"}}', key=str(chat_id).encode()
        )
        message = await send_until_acked(system, chat_id, alice, "after")
        assert message["seq"] == 1
        metrics = await asyncio.to_thread(read_url, f"http://127.0.0.1:{worker.env['port']}/metrics")
        counted = [
            line for line in metrics.splitlines() if line.startswith("streams_bad_records_total{") and topic in line
        ]
        assert counted and float(counted[0].rsplit(" ", 1)[1]) == 2.0
        assert "skipped record" in worker.log()
        await read_topic(system.settings, topic)
