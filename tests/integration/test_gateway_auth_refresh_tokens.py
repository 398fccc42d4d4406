"""Refresh tokens against the real Redis: rotation, reuse detection, logout, expiry."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio as aioredis

from gateway.errors import ApiError
from gateway.refresh_tokens import RefreshTokenStore

pytestmark = pytest.mark.integration

TTL_SECONDS = 60
USER = uuid.uuid4()


@pytest.fixture
def store(redis: aioredis.Redis, redis_prefix: str) -> RefreshTokenStore:
    return RefreshTokenStore(redis, TTL_SECONDS, prefix=redis_prefix)


async def assert_dead(store: RefreshTokenStore, token: str) -> None:
    with pytest.raises(ApiError) as caught:
        await store.rotate(token)
    assert (caught.value.status, caught.value.code) == (401, "invalid_token")


async def test_rotation_hands_out_a_new_token_for_the_same_user(store: RefreshTokenStore) -> None:
    first = await store.issue(USER)
    user, second = await store.rotate(first)
    assert user == USER
    assert second != first
    user, third = await store.rotate(second)
    assert user == USER and third not in (first, second)


async def test_a_rotated_token_is_dead(store: RefreshTokenStore) -> None:
    first = await store.issue(USER)
    await store.rotate(first)
    await assert_dead(store, first)


async def test_reusing_a_rotated_token_kills_the_whole_family(store: RefreshTokenStore) -> None:
    first = await store.issue(USER)
    _, second = await store.rotate(first)
    _, newest = await store.rotate(second)
    await assert_dead(store, first)
    await assert_dead(store, newest)
    await assert_dead(store, second)


async def test_a_killed_family_leaves_other_sessions_alone(store: RefreshTokenStore) -> None:
    victim = await store.issue(USER)
    other_session = await store.issue(USER)
    await store.rotate(victim)
    await assert_dead(store, victim)
    user, _ = await store.rotate(other_session)
    assert user == USER


async def test_two_refreshes_racing_with_one_token_cannot_both_win(store: RefreshTokenStore) -> None:
    token = await store.issue(USER)
    results = await asyncio.gather(store.rotate(token), store.rotate(token), return_exceptions=True)
    winners = [r for r in results if isinstance(r, tuple)]
    assert len(winners) == 1
    assert sum(isinstance(r, ApiError) for r in results) == 1
    await assert_dead(store, winners[0][1])


@pytest.mark.parametrize("token", ["", "never-issued", "x" * 10_000])
async def test_an_unknown_token_is_invalid(store: RefreshTokenStore, token: str) -> None:
    await assert_dead(store, token)


async def test_logout_kills_the_token(store: RefreshTokenStore) -> None:
    token = await store.issue(USER)
    await store.revoke(token)
    await assert_dead(store, token)


async def test_logout_with_a_rotated_token_ends_its_session(store: RefreshTokenStore) -> None:
    first = await store.issue(USER)
    _, second = await store.rotate(first)
    await store.revoke(first)
    await assert_dead(store, second)


async def test_logout_of_an_unknown_or_dead_token_is_fine(store: RefreshTokenStore) -> None:
    token = await store.issue(USER)
    await store.revoke(token)
    await store.revoke(token)
    await store.revoke("never-issued")
    await store.revoke("")


async def test_tokens_expire_on_their_own(redis: aioredis.Redis, redis_prefix: str) -> None:
    store = RefreshTokenStore(redis, 0.2, prefix=redis_prefix)
    token = await store.issue(USER)
    _, rotated = await store.rotate(token)
    await asyncio.sleep(0.3)
    await assert_dead(store, rotated)
    assert [key async for key in redis.scan_iter(match=f"{redis_prefix}*")] == []


async def test_every_key_has_the_ttl_and_no_plain_token_is_stored(
    store: RefreshTokenStore, redis: aioredis.Redis, redis_prefix: str
) -> None:
    first = await store.issue(USER)
    _, second = await store.rotate(first)
    keys = [key async for key in redis.scan_iter(match=f"{redis_prefix}*")]
    assert len(keys) == 3  # the family, the used token kept for reuse detection, the live one
    for key in keys:
        assert 0 < await redis.pttl(key) <= TTL_SECONDS * 1000
        stored = key + (await redis.dump(key) or b"")
        assert first.encode() not in stored and second.encode() not in stored
