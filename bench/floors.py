"""The floors this machine sets, measured in the same run: what the system's figures are compared to.

- Kafka: an aiokafka produce (acks=all) to consume round trip on one partition;
- PostgreSQL: a single-row INSERT and COMMIT (synchronous_commit on);
- WebSocket: an echo through aiohttp alone (server and client in this process).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import asyncpg
from aiohttp import ClientSession, WSMsgType, web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.stats import Summary, summarize
from config.kafka import client_options

FLOOR_WAIT_S = 10.0
"""One round trip that takes longer is a broken broker, not a floor: stop instead of hanging."""


async def kafka_round_trip(kafka: dict[str, Any], count: int) -> Summary:
    """`kafka`: the clients' `client_options`."""
    topic = f"bench.floor.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(**kafka)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 1, 1)])
    producer = AIOKafkaProducer(**kafka, acks="all", linger_ms=0)
    consumer = AIOKafkaConsumer(**kafka, group_id=None, fetch_max_wait_ms=5)
    await producer.start()
    await consumer.start()
    tp = TopicPartition(topic, 0)
    await producer.send_and_wait(topic, b"warm-up", partition=0)
    consumer.assign([tp])
    await consumer.seek_to_end(tp)
    await consumer.position(tp)
    samples = []
    try:
        for i in range(count):
            started = time.perf_counter()
            await producer.send_and_wait(topic, str(i).encode(), partition=0)
            await asyncio.wait_for(receive(consumer, tp, str(i).encode()), FLOOR_WAIT_S)
            samples.append(time.perf_counter() - started)
    finally:
        await producer.stop()
        await consumer.stop()
        await admin.delete_topics([topic])
        await admin.close()
    return summarize(samples)


async def receive(consumer: AIOKafkaConsumer, tp: TopicPartition, value: bytes) -> None:
    while True:
        batch = await consumer.getmany(tp, timeout_ms=1000)
        if any(r.value == value for r in batch.get(tp, [])):
            return


async def postgres_insert_commit(database_url: str, count: int) -> Summary:
    """A logged table (a TEMP one would skip the WAL flush that every commit pays)."""
    conn = await asyncpg.connect(database_url)
    table = f"bench_floor_{uuid.uuid4().hex[:8]}"
    await conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, body text)")
    samples = []
    try:
        for i in range(count):
            started = time.perf_counter()
            await conn.execute(f"INSERT INTO {table} VALUES ($1, 'x')", i)
            samples.append(time.perf_counter() - started)
    finally:
        await conn.execute(f"DROP TABLE {table}")
        await conn.close()
    return summarize(samples)


async def websocket_echo(count: int) -> Summary:
    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            await ws.send_str(message.data)
        return ws

    app = web.Application()
    app.router.add_get("/", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    samples = []
    try:
        async with ClientSession() as http, http.ws_connect(f"http://127.0.0.1:{port}/") as ws:
            for i in range(count):
                started = time.perf_counter()
                await ws.send_str(f'{{"n": {i}}}')
                reply = await ws.receive()
                assert reply.type == WSMsgType.TEXT
                samples.append(time.perf_counter() - started)
    finally:
        await runner.cleanup()
    return summarize(samples)


async def measure_floors(kafka: dict[str, Any], database_url: str, count: int) -> dict[str, Summary]:
    return {
        "kafka_round_trip": await kafka_round_trip(kafka, count),
        "postgres_insert_commit": await postgres_insert_commit(database_url, count),
        "websocket_echo": await websocket_echo(count),
    }


if __name__ == "__main__":
    from config.settings import CommonSettings

    settings = CommonSettings()
    result = asyncio.run(measure_floors(client_options(settings), settings.database_url, 300))
    for name, summary in result.items():
        print(name, summary)
