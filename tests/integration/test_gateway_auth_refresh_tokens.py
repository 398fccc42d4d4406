"""Refresh tokens against the real Redis: rotation, reuse detection, logout, expiry, and the
sessions (families) they make: which live, which ended, all of a user's ended at once."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio as aioredis

from gateway.auth.refresh_tokens import LIVE_BATCH, EndedSession, FamilyReused, RefreshTokenStore
from gateway.rest.errors import ApiError

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
    first = (await store.issue(USER)).token
    user, _, second = await store.rotate(first)
    assert user == USER
    assert second != first
    user, _, third = await store.rotate(second)
    assert user == USER and third not in (first, second)


async def test_a_rotated_token_is_dead(store: RefreshTokenStore) -> None:
    first = (await store.issue(USER)).token
    await store.rotate(first)
    await assert_dead(store, first)


async def test_reusing_a_rotated_token_kills_the_whole_family(store: RefreshTokenStore) -> None:
    first = (await store.issue(USER)).token
    _, _, second = await store.rotate(first)
    _, _, newest = await store.rotate(second)
    await assert_dead(store, first)
    await assert_dead(store, newest)
    await assert_dead(store, second)


async def test_a_killed_family_leaves_other_sessions_alone(store: RefreshTokenStore) -> None:
    victim = (await store.issue(USER)).token
    other_session = (await store.issue(USER)).token
    await store.rotate(victim)
    await assert_dead(store, victim)
    user, _, _ = await store.rotate(other_session)
    assert user == USER


async def test_two_refreshes_racing_with_one_token_cannot_both_win(store: RefreshTokenStore) -> None:
    token = (await store.issue(USER)).token
    results = await asyncio.gather(store.rotate(token), store.rotate(token), return_exceptions=True)
    winners = [r for r in results if isinstance(r, tuple)]
    assert len(winners) == 1
    assert sum(isinstance(r, ApiError) for r in results) == 1
    await assert_dead(store, winners[0][2])


@pytest.mark.parametrize("token", ["", "never-issued", "x" * 10_000])
async def test_an_unknown_token_is_invalid(store: RefreshTokenStore, token: str) -> None:
    await assert_dead(store, token)


async def test_logout_kills_the_token(store: RefreshTokenStore) -> None:
    token = (await store.issue(USER)).token
    await store.revoke(token)
    await assert_dead(store, token)


async def test_logout_with_a_rotated_token_ends_its_session(store: RefreshTokenStore) -> None:
    first = (await store.issue(USER)).token
    _, _, second = await store.rotate(first)
    await store.revoke(first)
    await assert_dead(store, second)


async def test_logout_of_an_unknown_or_dead_token_is_fine(store: RefreshTokenStore) -> None:
    token = (await store.issue(USER)).token
    await store.revoke(token)
    await store.revoke(token)
    await store.revoke("never-issued")
    await store.revoke("")


async def test_tokens_expire_on_their_own(redis: aioredis.Redis, redis_prefix: str) -> None:
    store = RefreshTokenStore(redis, 0.2, prefix=redis_prefix)
    token = (await store.issue(USER)).token
    _, _, rotated = await store.rotate(token)
    await asyncio.sleep(0.3)
    await assert_dead(store, rotated)
    assert [key async for key in redis.scan_iter(match=f"{redis_prefix}*")] == []


async def test_every_key_has_the_ttl_and_no_plain_token_is_stored(
    store: RefreshTokenStore, redis: aioredis.Redis, redis_prefix: str
) -> None:
    first = (await store.issue(USER)).token
    _, _, second = await store.rotate(first)
    keys = [key async for key in redis.scan_iter(match=f"{redis_prefix}*")]
    assert len(keys) == 4  # the family, the user's families, the used token kept for reuse detection, the live one
    for key in keys:
        assert 0 < await redis.pttl(key) <= TTL_SECONDS * 1000
        stored = key + (await redis.dump(key) or b"")
        assert first.encode() not in stored and second.encode() not in stored


async def test_a_session_lives_through_rotations_and_ends_at_logout(store: RefreshTokenStore) -> None:
    grant = await store.issue(USER)
    rotation = await store.rotate(grant.token)
    assert rotation.session_id == grant.session_id, "rotation keeps the family"
    assert await store.live([grant.session_id]) == {grant.session_id}
    assert await store.revoke(rotation.token) == EndedSession(USER, grant.session_id)
    assert await store.live([grant.session_id]) == set()


async def test_a_reused_token_names_the_session_it_killed(store: RefreshTokenStore) -> None:
    grant = await store.issue(USER)
    other = await store.issue(USER)
    await store.rotate(grant.token)
    with pytest.raises(FamilyReused) as caught:
        await store.rotate(grant.token)
    assert (caught.value.status, caught.value.code) == (401, "invalid_token")
    assert caught.value.ended == EndedSession(USER, grant.session_id)
    assert await store.live([grant.session_id, other.session_id]) == {other.session_id}


async def test_ending_a_user_ends_all_their_sessions_and_no_one_elses(store: RefreshTokenStore) -> None:
    someone_else = uuid.uuid4()
    mine = [await store.issue(USER) for _ in range(3)]
    theirs = await store.issue(someone_else)
    await store.rotate(mine[0].token)
    assert set(await store.end_user(USER)) == {g.session_id for g in mine}
    assert await store.live([g.session_id for g in mine] + [theirs.session_id]) == {theirs.session_id}
    for grant in mine[1:]:
        await assert_dead(store, grant.token)
    assert (await store.rotate(theirs.token)).user_id == someone_else


async def test_ending_one_session_leaves_the_others(store: RefreshTokenStore) -> None:
    ending, staying = await store.issue(USER), await store.issue(USER)
    await store.end(USER, ending.session_id)
    await assert_dead(store, ending.token)
    assert await store.end_user(USER) == [staying.session_id]


async def test_which_sessions_live_is_right_across_batches_of_every_kind(store: RefreshTokenStore) -> None:
    """A batch all live, one all dead, one mixed (asked again key by key), and repeats."""
    live = [(await store.issue(USER)).session_id for _ in range(LIVE_BATCH + LIVE_BATCH // 2)]
    dead = [uuid.uuid4().hex for _ in range(LIVE_BATCH + LIVE_BATCH // 2)]
    asked = live + dead + live[:3]
    assert await store.live(asked) == set(live)
    assert await store.live([]) == set()
