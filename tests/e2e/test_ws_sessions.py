"""Sessions and presence in the real Redis: first and last sockets are decided atomically across
instances, and a crashed instance's sessions expire into one `offline` (a clock is passed in, so
no test waits for the real 30 s)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio as aioredis

from gateway.ws.sessions import Session, SessionStore

pytestmark = pytest.mark.integration

TTL_S = 30.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def prefix() -> str:
    return f"test.{uuid.uuid4().hex[:8]}."


def instance(redis: aioredis.Redis, prefix: str, name: str, clock: Clock) -> SessionStore:
    return SessionStore(redis, prefix, name, ttl_s=TTL_S, clock=clock)


async def test_the_first_socket_anywhere_comes_online_and_the_last_goes_offline(
    redis: aioredis.Redis, prefix: str
) -> None:
    clock = Clock()
    a, b = instance(redis, prefix, "a", clock), instance(redis, prefix, "b", clock)
    user = str(uuid.uuid4())
    assert await a.open(Session(user, "s1")) is True
    assert await b.open(Session(user, "s2")) is False
    assert await a.open(Session(user, "s3")) is False
    assert await a.close(Session(user, "s1")) is False
    assert await b.close(Session(user, "s2")) is False
    assert await a.is_online(user)
    assert await a.close(Session(user, "s3")) is True
    assert not await a.is_online(user)
    assert await a.close(Session(user, "s3")) is False, "closing twice announces once"


async def test_concurrent_opens_and_closes_across_instances_announce_exactly_once(
    redis: aioredis.Redis, prefix: str
) -> None:
    clock = Clock()
    stores = [instance(redis, prefix, f"i{n}", clock) for n in range(4)]
    user = str(uuid.uuid4())
    sessions = [(stores[n % 4], Session(user, f"s{n}")) for n in range(40)]
    opened = await asyncio.gather(*(store.open(s) for store, s in sessions))
    assert sum(opened) == 1
    closed = await asyncio.gather(*(store.close(s) for store, s in sessions))
    assert sum(closed) == 1


async def test_a_crashed_instances_sessions_expire_into_one_offline(redis: aioredis.Redis, prefix: str) -> None:
    clock = Clock()
    crashed, alive = instance(redis, prefix, "crashed", clock), instance(redis, prefix, "alive", clock)
    gone, staying = str(uuid.uuid4()), str(uuid.uuid4())
    await crashed.open(Session(gone, "g1"))
    await crashed.open(Session(gone, "g2"))
    await crashed.open(Session(staying, "x1"))
    await alive.open(Session(staying, "y1"))

    clock.now += TTL_S / 3
    assert await alive.renew([Session(staying, "y1")]) == []
    assert await alive.sweep() == [], "nothing expired yet"

    clock.now += TTL_S * 0.9
    assert not await alive.is_online(gone)
    assert await alive.is_online(staying), "renewed by its live instance"
    assert await alive.sweep() == [gone], "one offline for two expired sockets"
    assert await alive.sweep() == []
    assert await crashed.close(Session(gone, "g1")) is False, "already swept and announced"


async def test_a_session_swept_while_its_instance_stalled_is_reported_for_reopening(
    redis: aioredis.Redis, prefix: str
) -> None:
    clock = Clock()
    stalled, other = instance(redis, prefix, "stalled", clock), instance(redis, prefix, "other", clock)
    user = str(uuid.uuid4())
    await stalled.open(Session(user, "s1"))
    clock.now += TTL_S * 2
    assert await other.sweep() == [user]
    assert await stalled.renew([Session(user, "s1")]) == [Session(user, "s1")]
    assert await stalled.open(Session(user, "s1")) is True, "back online once opened again"


async def test_a_user_back_before_the_sweep_is_not_announced_offline(redis: aioredis.Redis, prefix: str) -> None:
    clock = Clock()
    crashed, alive = instance(redis, prefix, "crashed", clock), instance(redis, prefix, "alive", clock)
    user = str(uuid.uuid4())
    await crashed.open(Session(user, "old"))
    clock.now += TTL_S * 2
    assert await alive.open(Session(user, "new")) is True, "offline by expiry, so this is a coming online"
    assert await alive.sweep() == [], "the user is online again"
    assert await alive.close(Session(user, "new")) is True
