"""The write budget and the socket cap in the real Redis: both decided by one Lua script, so
that every gateway instance shares them and no two of them can both let one more through."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio as aioredis

from gateway.infra.limits import WriteBudget
from gateway.ws.sessions import Session, SessionStore, TooManySessions

pytestmark = pytest.mark.integration


@pytest.fixture
def user() -> str:
    return str(uuid.uuid4())


async def test_a_budget_allows_its_burst_then_says_when_the_next_write_is_due(
    redis: aioredis.Redis, redis_prefix: str, user: str
) -> None:
    budget = WriteBudget(redis, redis_prefix, rate_per_s=2.0, burst=5)
    assert [await budget.take(user) for _ in range(5)] == [0] * 5
    wait_ms = await budget.take(user)
    assert 400 < wait_ms <= 500, "one write every 500 ms, and the last one was just taken"
    await asyncio.sleep(wait_ms / 1000 + 0.02)
    assert await budget.take(user) == 0
    assert await budget.take(user) > 0
    assert await budget.take(str(uuid.uuid4())) == 0, "another user's budget is their own"


async def test_a_write_of_several_units_takes_them_all_or_none(
    redis: aioredis.Redis, redis_prefix: str, user: str
) -> None:
    """A big group's creation costs several writes (`group_create_cost`): it needs them all at once."""
    budget = WriteBudget(redis, redis_prefix, rate_per_s=10.0, burst=10)
    assert await budget.take(user, cost=7) == 0
    wait_ms = await budget.take(user, cost=7)
    assert 300 < wait_ms <= 400, "3 of 10 left: 4 more, 100 ms each, are due before 7 can be taken"
    assert await budget.take(user, cost=3) == 0, "the refused take spent nothing"
    assert await budget.take(user) > 0


async def test_instances_share_one_budget_under_concurrency(
    redis: aioredis.Redis, redis_prefix: str, user: str
) -> None:
    """Two gateways' budgets over one Redis: 100 concurrent writes, exactly the burst let through."""
    a = WriteBudget(redis, redis_prefix, rate_per_s=0.01, burst=20)
    b = WriteBudget(redis, redis_prefix, rate_per_s=0.01, burst=20)
    waits = await asyncio.gather(*((a if n % 2 else b).take(user) for n in range(100)))
    assert waits.count(0) == 20


async def test_a_full_budget_leaves_no_key_behind(redis: aioredis.Redis, redis_prefix: str, user: str) -> None:
    budget = WriteBudget(redis, redis_prefix, rate_per_s=20.0, burst=2)
    await budget.take(user)
    await asyncio.sleep(0.1)
    assert [key async for key in redis.scan_iter(match=f"{redis_prefix}*")] == []


def store(redis: aioredis.Redis, prefix: str, name: str, now: list[float]) -> SessionStore:
    return SessionStore(redis, prefix, name, ttl_s=30.0, clock=lambda: now[0])


async def test_two_instances_let_in_exactly_the_cap(redis: aioredis.Redis, redis_prefix: str, user: str) -> None:
    now = [1_000_000.0]
    a, b = store(redis, redis_prefix, "a", now), store(redis, redis_prefix, "b", now)
    outcomes = await asyncio.gather(
        *((a if n % 2 else b).open(Session(user, f"s{n}"), cap=10) for n in range(30)), return_exceptions=True
    )
    assert sum(not isinstance(o, Exception) for o in outcomes) == 10
    refused = [o for o in outcomes if isinstance(o, Exception)]
    assert all(isinstance(o, TooManySessions) and 0 < o.retry_after_ms <= 30_000 for o in refused)
    assert await redis.zcard(a.user_key(user)) == 10, "a refused socket leaves no session"


async def test_a_closed_socket_frees_its_place(redis: aioredis.Redis, redis_prefix: str, user: str) -> None:
    now = [1_000_000.0]
    a = store(redis, redis_prefix, "a", now)
    for n in range(3):
        await a.open(Session(user, f"s{n}"), cap=3)
    with pytest.raises(TooManySessions):
        await a.open(Session(user, "s3"), cap=3)
    await a.close(Session(user, "s0"))
    await a.open(Session(user, "s3"), cap=3)


async def test_a_crashed_instances_sockets_stop_counting_when_they_expire(
    redis: aioredis.Redis, redis_prefix: str, user: str
) -> None:
    now = [1_000_000.0]
    crashed, alive = store(redis, redis_prefix, "crashed", now), store(redis, redis_prefix, "alive", now)
    for n in range(3):
        await crashed.open(Session(user, f"s{n}"), cap=3)
    now[0] += 20.0
    with pytest.raises(TooManySessions) as caught:
        await alive.open(Session(user, "new"), cap=3)
    assert caught.value.retry_after_ms == 10_000, "the soonest session expires in 10 s unless renewed"
    now[0] += 10.001
    await alive.open(Session(user, "new"), cap=3)
