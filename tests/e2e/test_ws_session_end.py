"""Sockets follow their session (contract v1.1), end to end: real workers, two gateways, the real
Redis. Logout and a killed refresh family close the session's sockets on both instances within
5 s with 4001 `session_ended`, and so does a family that disappears without any message (the
net under pub/sub); a token's expiry closes its socket unless an `auth` frame moved it."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jwt
import pytest
import redis.asyncio as aioredis

from gateway.auth.session_end import SessionEnds
from gateway.ws.session_watch import FAMILY_CHECK_S
from schemas.frames import SESSION_ENDED_CLOSE_CODE, SESSION_ENDED_REASON
from tests.e2e.gateway_harness import Client, Gateway, GatewaySystem, module_system

pytestmark = pytest.mark.e2e

WITHIN_S = 5.0
"""The contract's bound on closing a socket after its session ended."""
SHORT_S = 3
"""The lifetime of the short-lived tokens of the expiry tests."""


@pytest.fixture(scope="module")
async def system(
    topic_prefix: str, tmp_path_factory: pytest.TempPathFactory, jwt_secret: str, template_database: str
) -> AsyncIterator[GatewaySystem]:
    async with module_system("wsend", topic_prefix, tmp_path_factory, jwt_secret, template_database) as system:
        yield system


async def closed(client: Client, timeout: float = WITHIN_S + 1) -> tuple[int | None, str, float]:
    """The close code and reason of the server's close frame, and when (monotonic) it came.

    Taken from the close frame itself: aiohttp's client sets its `close_code` to 1006 when its
    answering close frame cannot be written, which happens when the server has already dropped
    the connection after sending its own (as aiohttp's server does)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{client.label}: still open after {timeout} s")
        message = await client.socket.receive(left)
        if message.type is aiohttp.WSMsgType.CLOSE:
            return int(message.data), str(message.extra or ""), time.monotonic()
        if message.type in (aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
            return client.socket.close_code, "", time.monotonic()


async def assert_session_ended(client: Client, since: float) -> float:
    """`client` is closed with 4001 `session_ended` within 5 s of `since`; how long it took."""
    code, reason, at = await closed(client)
    assert (code, reason) == (SESSION_ENDED_CLOSE_CODE, SESSION_ENDED_REASON), client.label
    took = at - since
    assert took <= WITHIN_S, f"{client.label} closed {took:.1f} s after its session ended"
    return took


async def assert_open(client: Client) -> None:
    await client.send({"type": "ping"})
    await client.expect("pong", timeout=3.0)


async def post(system: GatewaySystem, gateway: Gateway, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with system.http.post(f"{gateway.url}{path}", json=body) as response:
        return response.status, (await response.json() if response.status != 204 else None)


async def ws_status(system: GatewaySystem, gateway: Gateway, token: str) -> tuple[int, str]:
    async with system.http.get(gateway.ws_url, headers={"Authorization": f"Bearer {token}"}) as response:
        return response.status, (await response.json())["error"]["code"]


async def test_logout_closes_the_sessions_sockets_on_every_instance_and_no_other(system: GatewaySystem) -> None:
    alice = uuid.uuid4()
    ending, staying = await system.session(alice), await system.session(alice)
    ending_token = await system.token(alice, ending.session_id)
    gw_a, gw_b = system.gateways
    on_a = await system.connect(gw_a, alice, token=ending_token, label="ending@a")
    on_b = await system.connect(gw_b, alice, token=await system.token(alice, ending.session_id), label="ending@b")
    others = [
        await system.connect(
            gw, alice, token=await system.token(alice, staying.session_id), label=f"staying@{gw.instance_id}"
        )
        for gw in (gw_a, gw_b)
    ]

    started = time.monotonic()
    assert (await post(system, gw_a, "/api/v1/auth/logout", {"refresh_token": ending.token}))[0] == 204
    took = await asyncio.gather(assert_session_ended(on_a, started), assert_session_ended(on_b, started))
    assert max(took) < FAMILY_CHECK_S, "the announcement closed them, not the family check"
    print(f"logout to 4001 on both instances: {max(took) * 1000:.0f} ms")
    for other in others:
        await assert_open(other)
    assert await ws_status(system, gw_b, ending_token) == (401, "invalid_token"), "no new socket for an ended session"


async def test_a_reused_refresh_token_closes_the_sockets_of_its_family(system: GatewaySystem) -> None:
    alice = uuid.uuid4()
    grant = await system.session(alice)
    gw_a, gw_b = system.gateways
    first = await system.connect(gw_a, alice, token=await system.token(alice, grant.session_id), label="first")
    status, pair = await post(system, gw_b, "/api/v1/auth/refresh", {"refresh_token": grant.token})
    assert status == 200
    claims = jwt.decode(pair["access_token"], options={"verify_signature": False})
    assert claims["sid"] == grant.session_id, "a rotation keeps the session"
    refreshed = await system.connect(gw_b, alice, token=pair["access_token"], label="refreshed")

    started = time.monotonic()
    assert (await post(system, gw_b, "/api/v1/auth/refresh", {"refresh_token": grant.token}))[0] == 401
    await asyncio.gather(assert_session_ended(first, started), assert_session_ended(refreshed, started))


async def test_a_family_gone_without_a_word_still_closes_its_sockets(system: GatewaySystem) -> None:
    """The family dies in Redis and no message is published, as when pub/sub loses it."""
    alice = uuid.uuid4()
    grant = await system.session(alice)
    sockets = [
        await system.connect(gw, alice, token=await system.token(alice, grant.session_id), label=gw.instance_id)
        for gw in system.gateways
    ]
    started = time.monotonic()
    await system.refresh_tokens.end(alice, grant.session_id)
    took = await asyncio.gather(*(assert_session_ended(s, started) for s in sockets))
    print(f"a family gone without a message to 4001 on both instances: {max(took) * 1000:.0f} ms")


async def test_a_socket_closes_at_its_tokens_expiry_unless_an_auth_frame_came_first(system: GatewaySystem) -> None:
    alice = uuid.uuid4()
    first, second = await system.session(alice), await system.session(alice)
    expiring_token = await system.token(alice, first.session_id, lifetime_s=SHORT_S)
    expires_at = jwt.decode(expiring_token, options={"verify_signature": False})["exp"]
    expiring = await system.connect(system.gateways[0], alice, token=expiring_token, label="expiring")
    extended = await system.connect(
        system.gateways[1],
        alice,
        token=await system.token(alice, first.session_id, lifetime_s=SHORT_S),
        label="extended",
    )
    await extended.send({"type": "auth", "token": await system.token(alice, second.session_id)})
    await assert_open(extended)
    assert extended.inbox == [], "the auth frame was taken without an error"

    code, reason, _ = await closed(expiring, timeout=SHORT_S + WITHIN_S + 1)
    assert (code, reason) == (SESSION_ENDED_CLOSE_CODE, SESSION_ENDED_REASON)
    late = time.time() - expires_at
    assert -1.0 <= late <= WITHIN_S, f"closed {late:.1f} s after the token's exp"
    await assert_open(extended)

    started = time.monotonic()
    assert (await post(system, system.gateways[0], "/api/v1/auth/logout", {"refresh_token": second.token}))[0] == 204
    await assert_session_ended(extended, started)


async def test_an_auth_frame_with_another_users_or_a_bad_token_is_refused_and_the_deadline_stays(
    system: GatewaySystem,
) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    grant = await system.session(alice)
    token = await system.token(alice, grant.session_id, lifetime_s=SHORT_S)
    expires_at = jwt.decode(token, options={"verify_signature": False})["exp"]
    client = await system.connect(system.gateways[0], alice, token=token, label="alice")
    ended = await system.session(alice)
    ended_token = await system.token(alice, ended.session_id)
    await system.refresh_tokens.end(alice, ended.session_id)

    for offered, expected in [
        (await system.token(bob), "forbidden"),
        ("not-a-jwt", "invalid_token"),
        (ended_token, "invalid_token"),
    ]:
        await client.send({"type": "auth", "token": offered, "client_msg_id": expected})
        error = await client.expect("error", timeout=3.0)
        assert (error["code"], error["ref"]) == (expected, expected)

    code, reason, _ = await closed(client, timeout=SHORT_S + WITHIN_S + 1)
    assert (code, reason) == (SESSION_ENDED_CLOSE_CODE, SESSION_ENDED_REASON)
    assert time.time() - expires_at <= WITHIN_S


async def test_ending_one_session_or_all_of_a_users_closes_theirs_and_no_one_elses(system: GatewaySystem) -> None:
    """`gateway.auth.session_end`, as erasure will call it: one session, then every session of a user."""
    alice, bob = uuid.uuid4(), uuid.uuid4()
    one, other = await system.session(alice), await system.session(alice)
    gw_a, gw_b = system.gateways
    first = await system.connect(gw_a, alice, token=await system.token(alice, one.session_id), label="one@a")
    rest = [
        await system.connect(gw_b, alice, token=await system.token(alice, other.session_id), label="other@b"),
        await system.connect(gw_a, alice, label="third@a"),
        await system.connect(gw_b, alice, label="fourth@b"),
    ]
    bobs = await system.connect(gw_b, bob, label="bob")
    redis = aioredis.from_url(system.settings.redis_url)
    try:
        ends = SessionEnds(redis, system.refresh_tokens, system.settings.topic_prefix)
        started = time.monotonic()
        await ends.end_session(alice, one.session_id)
        await assert_session_ended(first, started)
        for client in rest:
            await assert_open(client)

        started = time.monotonic()
        await ends.end_user_sessions(alice)
        await asyncio.gather(*(assert_session_ended(c, started) for c in rest))
        await assert_open(bobs)
        assert (await post(system, gw_a, "/api/v1/auth/refresh", {"refresh_token": other.token}))[0] == 401
    finally:
        await redis.aclose()
