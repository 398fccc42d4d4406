"""Password hashing: argon2id at OWASP's parameters, off the event loop, blind to unknown users."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.auth.passwords import hash_password, verify_password

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
async def stored() -> str:
    return await hash_password(PASSWORD)


async def test_the_hash_is_argon2id_with_owasp_parameters(stored: str) -> None:
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert PASSWORD not in stored


async def test_each_hash_has_its_own_salt(stored: str) -> None:
    assert await hash_password(PASSWORD) != stored


async def test_the_right_password_verifies(stored: str) -> None:
    assert await verify_password(stored, PASSWORD)


@pytest.mark.parametrize("attempt", ["", "Correct horse battery staple", PASSWORD + " "])
async def test_a_wrong_password_does_not(stored: str, attempt: str) -> None:
    assert not await verify_password(stored, attempt)


async def test_an_unknown_user_never_verifies() -> None:
    assert not await verify_password(None, PASSWORD)
    assert not await verify_password(None, "")


async def test_a_corrupt_hash_does_not_verify() -> None:
    assert not await verify_password("$argon2id$garbage", PASSWORD)
    assert not await verify_password("", PASSWORD)


async def test_an_unknown_user_takes_about_as_long_as_a_known_one(stored: str) -> None:
    await verify_password(None, PASSWORD)  # the dummy hash is made on first use
    known = await fastest_of(6, stored)
    unknown = await fastest_of(6, None)
    assert 0.5 < unknown / known < 2


async def fastest_of(runs: int, encoded_hash: str | None) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        await verify_password(encoded_hash, "wrong password")
        times.append(time.perf_counter() - start)
    return min(times)


async def test_hashing_leaves_the_event_loop_free() -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.001)
            ticks += 1

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0)
    await asyncio.gather(hash_password(PASSWORD), hash_password(PASSWORD))
    ticker.cancel()
    assert ticks >= 3
