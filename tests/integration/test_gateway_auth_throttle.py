"""Login and registration throttling against the real Redis: attempts are reserved atomically
before a password is verified, 429 with Retry-After past the limits, given back on success."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from gateway.auth.throttle import (
    MAX_FAILURES_PER_ADDRESS,
    MAX_FAILURES_PER_USERNAME,
    WINDOW_SECONDS,
    LoginThrottle,
    RegisterThrottle,
)
from gateway.rest.errors import ApiError

pytestmark = pytest.mark.integration

ADDRESS = "198.51.100.7"
OTHER_ADDRESS = "203.0.113.9"


@pytest.fixture
def throttle(redis: aioredis.Redis, redis_prefix: str) -> LoginThrottle:
    return LoginThrottle(redis, prefix=redis_prefix)


async def fail(throttle: LoginThrottle, times: int, username: str = "alice", address: str = ADDRESS) -> None:
    """`times` attempts that turn out wrong: reserved, never given back."""
    for _ in range(times):
        await throttle.reserve(username, address)


async def refusal(throttle: LoginThrottle, username: str = "alice", address: str = ADDRESS) -> ApiError:
    with pytest.raises(ApiError) as caught:
        await throttle.reserve(username, address)
    return caught.value


async def test_attempts_under_the_limit_pass(throttle: LoginThrottle) -> None:
    await fail(throttle, MAX_FAILURES_PER_USERNAME)


async def test_the_username_limit_answers_429_with_retry_after(throttle: LoginThrottle) -> None:
    await fail(throttle, MAX_FAILURES_PER_USERNAME)
    error = await refusal(throttle)
    assert (error.status, error.code) == (429, "rate_limited")
    assert 1 <= int(error.headers["Retry-After"]) <= WINDOW_SECONDS


async def test_fifty_concurrent_attempts_reserve_exactly_the_limit(throttle: LoginThrottle) -> None:
    """The race the old check-verify-count order lost: all fifty at once, five get through."""
    outcomes = await asyncio.gather(*(throttle.reserve("alice", ADDRESS) for _ in range(50)), return_exceptions=True)
    assert sum(o is None for o in outcomes) == MAX_FAILURES_PER_USERNAME
    assert all(isinstance(o, ApiError) and o.code == "rate_limited" for o in outcomes if o is not None)


async def test_a_refused_attempt_counts_on_neither_counter(throttle: LoginThrottle) -> None:
    """Refused by the username limit, an attempt does not use up the address's."""
    await fail(throttle, MAX_FAILURES_PER_USERNAME)
    for _ in range(MAX_FAILURES_PER_ADDRESS):
        await refusal(throttle)
    for n in range(MAX_FAILURES_PER_ADDRESS - MAX_FAILURES_PER_USERNAME):
        await throttle.reserve(f"user{n}", ADDRESS)
    await refusal(throttle, username="someone-new")


async def test_the_username_limit_holds_from_any_address_and_in_any_case(throttle: LoginThrottle) -> None:
    await fail(throttle, MAX_FAILURES_PER_USERNAME, username="Alice")
    await refusal(throttle, username="ALICE", address=OTHER_ADDRESS)
    await throttle.reserve("bob", ADDRESS)


async def test_the_address_limit_holds_across_usernames(throttle: LoginThrottle) -> None:
    for n in range(MAX_FAILURES_PER_ADDRESS):
        await throttle.reserve(f"user{n}", ADDRESS)
    error = await refusal(throttle, username="someone-new")
    assert error.code == "rate_limited"
    await throttle.reserve("someone-new", OTHER_ADDRESS)


async def test_success_resets_the_username_and_gives_the_address_its_attempt_back(throttle: LoginThrottle) -> None:
    await fail(throttle, MAX_FAILURES_PER_USERNAME - 1)
    await throttle.reserve("ALICE", ADDRESS)
    await throttle.succeeded("ALICE", ADDRESS)
    await fail(throttle, MAX_FAILURES_PER_USERNAME)
    await refusal(throttle)
    # the address holds 4 + 5 failures of alice (the right attempt was given back): 11 more fit
    for n in range(MAX_FAILURES_PER_ADDRESS - 2 * MAX_FAILURES_PER_USERNAME + 1):
        await throttle.reserve(f"user{n}", ADDRESS)
    await refusal(throttle, username="someone-new")


async def test_honest_logins_from_one_address_never_fill_it(throttle: LoginThrottle) -> None:
    """An office behind one address: a hundred right passwords leave its counter at zero."""
    for n in range(100):
        await throttle.reserve(f"colleague{n}", ADDRESS)
        await throttle.succeeded(f"colleague{n}", ADDRESS)
    await fail(throttle, MAX_FAILURES_PER_USERNAME)


async def test_an_undecided_attempt_is_given_back(throttle: LoginThrottle) -> None:
    for _ in range(3 * MAX_FAILURES_PER_USERNAME):
        await throttle.reserve("alice", ADDRESS)
        await throttle.undecided("alice", ADDRESS)
    await fail(throttle, MAX_FAILURES_PER_USERNAME)


async def test_the_window_ends_on_its_own(redis: aioredis.Redis, redis_prefix: str) -> None:
    throttle = LoginThrottle(redis, prefix=redis_prefix, window_seconds=0.3)
    await fail(throttle, MAX_FAILURES_PER_USERNAME)
    error = await refusal(throttle)
    assert error.headers["Retry-After"] == "1"
    await asyncio.sleep(0.4)
    await throttle.reserve("alice", ADDRESS)


async def test_the_window_starts_at_the_first_attempt(redis: aioredis.Redis, redis_prefix: str) -> None:
    throttle = LoginThrottle(redis, prefix=redis_prefix, window_seconds=0.5)
    await fail(throttle, 1)
    await asyncio.sleep(0.3)
    await fail(throttle, MAX_FAILURES_PER_USERNAME - 1)
    await refusal(throttle)
    await asyncio.sleep(0.3)
    await throttle.reserve("alice", ADDRESS)


async def test_registrations_are_counted_per_address_group(redis: aioredis.Redis, redis_prefix: str) -> None:
    throttle = RegisterThrottle(redis, prefix=redis_prefix, limit=3, window_seconds=3600)
    outcomes = await asyncio.gather(*(throttle.reserve("2001:db8::1") for _ in range(10)), return_exceptions=True)
    assert sum(o is None for o in outcomes) == 3
    with pytest.raises(ApiError) as caught:
        await throttle.reserve("2001:db8::ffff:2")  # the same /64
    assert caught.value.status == 429 and 3500 < int(caught.value.headers["Retry-After"]) <= 3600
    await throttle.reserve("2001:db8:0:1::1")  # another /64
