"""Login throttling against the real Redis: 429 with Retry-After after the limits, reset on success."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio as aioredis

from gateway.errors import ApiError
from gateway.throttle import MAX_FAILURES_PER_ADDRESS, MAX_FAILURES_PER_USERNAME, WINDOW_SECONDS, LoginThrottle

pytestmark = pytest.mark.integration

ADDRESS = "198.51.100.7"
OTHER_ADDRESS = "203.0.113.9"


@pytest.fixture
def throttle(redis: aioredis.Redis, redis_prefix: str) -> LoginThrottle:
    return LoginThrottle(redis, prefix=redis_prefix)


async def fail(throttle: LoginThrottle, times: int, username: str = "alice", address: str = ADDRESS) -> None:
    for _ in range(times):
        await throttle.record_failure(username, address)


async def refusal(throttle: LoginThrottle, username: str = "alice", address: str = ADDRESS) -> ApiError:
    with pytest.raises(ApiError) as caught:
        await throttle.check(username, address)
    return caught.value


async def test_failures_under_the_limit_pass(throttle: LoginThrottle) -> None:
    await fail(throttle, MAX_FAILURES_PER_USERNAME - 1)
    await throttle.check("alice", ADDRESS)


async def test_the_username_limit_answers_429_with_retry_after(throttle: LoginThrottle) -> None:
    await fail(throttle, MAX_FAILURES_PER_USERNAME)
    error = await refusal(throttle)
    assert (error.status, error.code) == (429, "rate_limited")
    assert 1 <= int(error.headers["Retry-After"]) <= WINDOW_SECONDS


async def test_the_username_limit_holds_from_any_address_and_in_any_case(throttle: LoginThrottle) -> None:
    await fail(throttle, MAX_FAILURES_PER_USERNAME, username="Alice")
    await refusal(throttle, username="ALICE", address=OTHER_ADDRESS)
    await throttle.check("bob", ADDRESS)


async def test_the_address_limit_holds_across_usernames(throttle: LoginThrottle) -> None:
    for n in range(MAX_FAILURES_PER_ADDRESS):
        await throttle.record_failure(f"user{n}", ADDRESS)
    error = await refusal(throttle, username="someone-new")
    assert error.code == "rate_limited"
    await throttle.check("someone-new", OTHER_ADDRESS)


async def test_success_resets_the_username_but_not_the_address(throttle: LoginThrottle) -> None:
    await fail(throttle, MAX_FAILURES_PER_USERNAME)
    await throttle.reset("ALICE")
    await throttle.check("alice", ADDRESS)
    for n in range(MAX_FAILURES_PER_ADDRESS - MAX_FAILURES_PER_USERNAME):
        await throttle.record_failure(f"user{n}", ADDRESS)
    await refusal(throttle)


async def test_the_window_ends_on_its_own(redis: aioredis.Redis, redis_prefix: str) -> None:
    throttle = LoginThrottle(redis, prefix=redis_prefix, window_seconds=0.3)
    await fail(throttle, MAX_FAILURES_PER_USERNAME)
    error = await refusal(throttle)
    assert error.headers["Retry-After"] == "1"
    await asyncio.sleep(0.4)
    await throttle.check("alice", ADDRESS)


async def test_the_window_starts_at_the_first_failure(redis: aioredis.Redis, redis_prefix: str) -> None:
    throttle = LoginThrottle(redis, prefix=redis_prefix, window_seconds=0.5)
    await fail(throttle, 1)
    await asyncio.sleep(0.3)
    await fail(throttle, MAX_FAILURES_PER_USERNAME - 1)
    await refusal(throttle)
    await asyncio.sleep(0.3)
    await throttle.check("alice", ADDRESS)
