"""Reading and writing the real topics from tests."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from config.kafka import client_options
from config.settings import CommonSettings
from schemas.events import Event, decode_event


async def read_topic(settings: CommonSettings, name: str) -> list[Any]:
    """Every record of a topic, from offset 0 to its current end, all partitions."""
    consumer = AIOKafkaConsumer(**client_options(settings), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(name)
        if partitions is None:
            await consumer._client.force_metadata_update()  # a topic created after start
            partitions = consumer.partitions_for_topic(name) or set()
        tps = [TopicPartition(name, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records: list[Any] = []
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, batch in batches.items():
                records.extend(batch)
                if batch and batch[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
        return records
    finally:
        await consumer.stop()


async def read_events(settings: CommonSettings, name: str) -> list[Event]:
    return [decode_event(r.value) for r in await read_topic(settings, name)]


async def eventually(check: Any, timeout: float = 30.0, interval: float = 0.2) -> Any:
    """Await `check()` until it returns a truthy value; fail after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not true within {timeout}s: last {result!r}")
        await asyncio.sleep(interval)
