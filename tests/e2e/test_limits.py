"""Rate limits over real HTTP and WebSocket against two real gateways (issue 10, rows 1, 6 and 8):
the login throttle under fifty concurrent guesses, one write budget shared by REST and WebSocket
across instances and reconnects, registration per address, and the cap on a user's sockets.

The gateways run with a small write budget (5 at once, then one every 20 s) and a small
registration allowance, so that no test needs to send much or wait for a refill. Clients bind to
their own loopback addresses (127.0.0.2, ...) where a test counts per address.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDictProxy

from gateway.auth.throttle import MAX_FAILURES_PER_USERNAME
from tests.e2e.gateway_harness import Client, Frame, Gateway, GatewaySystem, module_system

pytestmark = pytest.mark.e2e

WRITE_BURST = 5
REGISTER_LIMIT = 3
LIMITS_ENV = {
    "WRITE_RATE_PER_S": "0.05",
    "WRITE_BURST": str(WRITE_BURST),
    "REGISTER_LIMIT_PER_ADDRESS": str(REGISTER_LIMIT),
}
PASSWORD_CHECKS = "gateway_login_password_checks_total"


@pytest.fixture(scope="module")
async def system(
    topic_prefix: str, tmp_path_factory: pytest.TempPathFactory, jwt_secret: str, template_database: str
) -> AsyncIterator[GatewaySystem]:
    async with module_system(
        "limits", topic_prefix, tmp_path_factory, jwt_secret, template_database, gateway_env=LIMITS_ENV
    ) as system:
        yield system


def http_from(address: str) -> aiohttp.ClientSession:
    """A client whose connections come from `address` (any 127.x.y.z is loopback)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0), limit=0))


async def call(
    http: aiohttp.ClientSession, method: str, url: str, token: str | None = None, **kwargs: Any
) -> tuple[int, Any, CIMultiDictProxy[str]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.request(method, url, headers=headers, **kwargs) as response:
        body = await response.json() if response.content_type == "application/json" else None
        return response.status, body, response.headers


def assert_rate_limited(status: int, body: Any, headers: Any) -> int:
    """The contract's 429: `rate_limited` and a whole number of seconds in `Retry-After`."""
    assert (status, body["error"]["code"]) == (429, "rate_limited"), (status, body)
    retry_after = int(headers["Retry-After"])
    assert retry_after >= 1
    return retry_after


# --- login and registration ---------------------------------------------------------------------


async def test_fifty_concurrent_guesses_verify_at_most_the_limit_and_hide_no_right_password(
    system: GatewaySystem,
) -> None:
    """Row 1: fifty guesses at one account at once, the right password as the fiftieth (sent
    once the gateway has verified the first ones, while the rest are in flight): at most five
    passwords are verified (argon2id, counted by the gateway), every other guess is 429 with
    Retry-After, the right password included."""
    gateway = system.gateways[0]
    name, password = f"victim{uuid.uuid4().hex[:8]}", "the right password"
    async with http_from("127.0.0.3") as http:
        status, body, _ = await call(
            http, "POST", f"{gateway.url}/api/v1/auth/register", json={"username": name, "password": password}
        )
        assert status == 201, body
        checks_before = gateway.metric(PASSWORD_CHECKS)

        async def guess(attempt: str) -> tuple[int, Any, Any]:
            return await call(
                http, "POST", f"{gateway.url}/api/v1/auth/login", json={"username": name, "password": attempt}
            )

        async def right_guess() -> tuple[int, Any, Any]:
            deadline = asyncio.get_running_loop().time() + 10
            while await asyncio.to_thread(gateway.metric, PASSWORD_CHECKS) - checks_before < MAX_FAILURES_PER_USERNAME:
                assert asyncio.get_running_loop().time() < deadline, "the gateway verified no password"
                await asyncio.sleep(0.005)
            return await guess(password)

        answers = await asyncio.gather(*(guess(f"wrong guess {n}") for n in range(49)), right_guess())
    verified = gateway.metric(PASSWORD_CHECKS) - checks_before
    assert verified == MAX_FAILURES_PER_USERNAME, f"{verified:.0f} passwords verified"
    assert answers[49][0] == 429, "the right password got through the throttle"
    assert sum(status == 401 for status, _, _ in answers) == verified
    for status, body, headers in answers:
        if status != 401:
            assert_rate_limited(status, body, headers)


async def test_registration_is_throttled_per_address(system: GatewaySystem) -> None:
    gateway = system.gateways[1]
    url = f"{gateway.url}/api/v1/auth/register"
    async with http_from("127.0.0.2") as http:
        for _ in range(REGISTER_LIMIT):
            status, body, _ = await call(
                http, "POST", url, json={"username": f"r{uuid.uuid4().hex[:10]}", "password": "password1"}
            )
            assert status == 201, body
        retry_after = assert_rate_limited(
            *await call(http, "POST", url, json={"username": f"r{uuid.uuid4().hex[:10]}", "password": "password1"})
        )
        assert retry_after <= 3600
    async with http_from("127.0.0.4") as http:
        status, body, _ = await call(
            http, "POST", url, json={"username": f"r{uuid.uuid4().hex[:10]}", "password": "password1"}
        )
        assert status == 201, body


# --- one write budget ---------------------------------------------------------------------------


def send_frame(chat_id: uuid.UUID, client_msg_id: str) -> Frame:
    return {"type": "message.send", "chat_id": str(chat_id), "client_msg_id": client_msg_id, "text": "hello"}


async def rest_send(system: GatewaySystem, gateway: Gateway, token: str, chat_id: uuid.UUID) -> tuple[int, Any, Any]:
    body = {"text": "hello", "client_msg_id": uuid.uuid4().hex}
    return await call(system.http, "POST", f"{gateway.url}/api/v1/chats/{chat_id}/messages", token, json=body)


async def refused_frame(client: Client, ref: str) -> Frame:
    answer = await client.expect("error", lambda f: f["ref"] == ref)
    assert answer["code"] == "rate_limited", answer
    assert isinstance(answer["retry_after_ms"], int) and answer["retry_after_ms"] > 0, answer
    return answer


async def test_rest_writes_spend_the_budget_a_socket_on_another_instance_then_lacks(system: GatewaySystem) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    chat = await system.create_chat(alice, [bob])
    token = await system.token(alice)
    a, b = system.gateways
    for _ in range(WRITE_BURST):
        status, body, _ = await rest_send(system, a, token, chat)
        assert status == 201, body
    retry_after = assert_rate_limited(*await rest_send(system, a, token, chat))
    assert retry_after <= 20
    socket = await system.connect(b, alice)
    await socket.send(send_frame(chat, "over"))
    assert (await refused_frame(socket, "over"))["retry_after_ms"] <= 20_000
    await socket.send({"type": "typing", "chat_id": str(chat), "client_msg_id": "typing"})
    await refused_frame(socket, "typing")
    await socket.close()


async def test_socket_writes_spend_the_budget_across_a_reconnect_and_rest(system: GatewaySystem) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    chat = await system.create_chat(alice, [bob])
    a, b = system.gateways
    socket = await system.connect(a, alice)
    for n in range(WRITE_BURST):
        client_msg_id = f"w{n}"
        await socket.send(send_frame(chat, client_msg_id))
        await socket.expect("message.ack", lambda f: bool(f["client_msg_id"] == client_msg_id))  # noqa: B023 awaited in this turn
    await socket.close()
    again = await system.connect(a, alice)
    await again.send(send_frame(chat, "after-reconnect"))
    await refused_frame(again, "after-reconnect")
    await again.close()
    assert_rate_limited(*await rest_send(system, b, await system.token(alice), chat))


async def test_the_frame_bucket_is_not_refilled_by_reconnecting(system: GatewaySystem) -> None:
    """Row 8: pings are no writes, but every frame counts against the user's frame bucket on
    the instance (40/s, 80 at once); a new socket gets the emptied bucket, not a full one."""
    user = uuid.uuid4()
    gateway = system.gateways[0]
    first = await system.connect(gateway, user)
    for _ in range(120):
        await first.send({"type": "ping"})
    await first.close()
    second = await system.connect(gateway, user)
    for _ in range(40):
        await second.send({"type": "ping", "client_msg_id": "again"})
    frames = await second.drain()
    refused = [f for f in frames if f["type"] == "error"]
    assert refused and all(f["code"] == "rate_limited" and f["retry_after_ms"] > 0 for f in refused), frames[:3]
    await second.close()


# --- the socket cap -----------------------------------------------------------------------------


async def upgrade(system: GatewaySystem, gateway: Gateway, token: str) -> tuple[int, Any, Any]:
    """A WebSocket handshake by hand, to read a refusal's status, body and headers."""
    headers = {
        "Authorization": f"Bearer {token}",
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    }
    async with system.http.get(gateway.ws_url, headers=headers) as response:
        body = await response.json() if response.content_type == "application/json" else None
        return response.status, body, response.headers


async def test_the_eleventh_socket_anywhere_is_refused_before_the_upgrade(system: GatewaySystem) -> None:
    user = uuid.uuid4()
    a, b = system.gateways
    sockets = [await system.connect(a if n % 2 else b, user) for n in range(10)]
    token = await system.token(user)
    for gateway in (a, b):
        retry_after = assert_rate_limited(*await upgrade(system, gateway, token))
        assert retry_after <= 30
    await sockets[0].close()
    deadline = asyncio.get_running_loop().time() + 5
    while True:
        try:
            eleventh = await system.connect(b, user)
            break
        except aiohttp.WSServerHandshakeError as refused:
            assert refused.status == 429 and asyncio.get_running_loop().time() < deadline  # noqa: PT017 retried until the deadline
            await asyncio.sleep(0.05)
    await asyncio.gather(*(s.close() for s in [*sockets[1:], eleventh]))
