"""The gateway's per-user pub/sub against the real Redis: a dropped connection is noticed, even
when redis-py reconnects inside a read that never raises, and the owner is told to resync."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from config.settings import CommonSettings
from gateway.ws.routing import Route, UserChannels

pytestmark = pytest.mark.integration


async def test_a_dropped_pubsub_connection_is_reopened_resubscribed_and_reported(redis_prefix: str) -> None:
    client = aioredis.Redis(
        connection_pool=aioredis.BlockingConnectionPool.from_url(
            CommonSettings().redis_url,
            retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), 3),
        )
    )
    received: list[Route] = []
    reopened = asyncio.Event()
    channels = UserChannels(client, redis_prefix, "test-instance", received.append, on_reopened=reopened.set)
    await channels.start()
    try:
        assert channels.state.health() == "up"
        await channels.acquire("alice")
        assert await client.execute_command("CLIENT", "KILL", "TYPE", "pubsub") >= 1  # type: ignore[no-untyped-call]
        await asyncio.wait_for(reopened.wait(), 10)
        assert channels.state.health() == "up"
        for _ in range(50):  # subscribed again: a frame published now reaches the listener
            await channels.publish([Route("alice", '{"type":"typing"}')])
            if received:
                break
            await asyncio.sleep(0.1)
        assert [r.user_id for r in received][:1] == ["alice"]
    finally:
        await channels.stop()
        await client.aclose()
