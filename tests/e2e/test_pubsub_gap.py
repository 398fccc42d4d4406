"""A gateway whose Redis pub/sub connection drops loses what is published to its users' channels
until it is back (pub/sub is at-most-once), and makes its sockets whole from the read models when
it is. Those may not hold the lost messages yet: this injects that case into the real stack and
checks the socket still gets every message once.

The gateway reaches Redis through a TCP proxy that the test makes refuse new connections, so that
killing the pub/sub connection (`CLIENT KILL`) keeps it away while the gateway's other Redis
connections, which publish, go on working; the projections worker is frozen (SIGSTOP) meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis.asyncio as aioredis

from config.settings import CommonSettings
from tests.e2e.gateway_harness import Gateway, GatewaySystem, module_system
from tests.processes import Process
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.e2e

WAIT_S = 15.0


def via_proxy(redis_url: str, port: int) -> str:
    parts = urlsplit(redis_url)
    credentials = parts.netloc.rpartition("@")[0]
    return urlunsplit(parts._replace(netloc=f"{credentials}@127.0.0.1:{port}" if credentials else f"127.0.0.1:{port}"))


@pytest.fixture(scope="module")
def redis_url() -> str:
    return CommonSettings().redis_url


@pytest.fixture(scope="module")
async def proxy(redis_url: str) -> AsyncIterator[TcpProxy]:
    parts = urlsplit(redis_url)
    async with TcpProxy(parts.hostname or "127.0.0.1", parts.port or 6379) as proxy:
        yield proxy


@pytest.fixture(scope="module")
async def system(
    proxy: TcpProxy,
    redis_url: str,
    topic_prefix: str,
    tmp_path_factory: pytest.TempPathFactory,
    jwt_secret: str,
    template_database: str,
) -> AsyncIterator[GatewaySystem]:
    async with module_system(
        "pubsubgap",
        topic_prefix,
        tmp_path_factory,
        jwt_secret,
        template_database,
        {"REDIS_URL": via_proxy(redis_url, proxy.port)},
        gateways=1,
    ) as system:
        yield system


def user_channels_state(gateway: Gateway) -> str:
    """The gateway's pub/sub connection as its /healthz reports it (503 while a worker is frozen)."""
    try:
        response = urllib.request.urlopen(f"{gateway.url}/healthz", timeout=10)
    except urllib.error.HTTPError as error:
        response = error
    return str(json.loads(response.read())["connections"]["user_channels"])


async def until(check: object, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while not await asyncio.to_thread(check):  # type: ignore[arg-type]
        assert asyncio.get_running_loop().time() < deadline, f"not in {WAIT_S} s: {what}"
        await asyncio.sleep(0.1)


async def kill_pubsub_of(proxy: TcpProxy, redis: aioredis.Redis) -> None:
    """Have Redis drop the pub/sub connections that come through `proxy` (the gateway's)."""
    ports = proxy.upstream_ports()
    clients = await redis.client_list(_type="pubsub")
    killed = [c["id"] for c in clients if int(c["addr"].rsplit(":", 1)[1]) in ports]
    assert killed, "the gateway holds a pub/sub connection through the proxy"
    for client_id in killed:
        await redis.client_kill_filter(_id=client_id)


def worker(system: GatewaySystem, name: str) -> Process:
    [found] = [w for w in system.workers if w.name == name]
    return found


async def test_a_message_lost_in_the_gap_and_not_yet_projected_still_reaches_the_socket(
    system: GatewaySystem, proxy: TcpProxy, redis_url: str
) -> None:
    gateway = system.gateways[0]
    alice, bob = uuid.uuid4(), uuid.uuid4()
    chat = await system.create_chat(alice, [bob], direct=True)
    sender = await system.connect(gateway, alice, label="alice")
    reader = await system.connect(gateway, bob, label="bob")
    await asyncio.sleep(0.3)
    await sender.drain()
    await reader.drain()
    projections = worker(system, "projections")
    redis = aioredis.from_url(redis_url, decode_responses=True)
    try:
        projections.popen.send_signal(signal.SIGSTOP)
        proxy.refusing = True
        await kill_pubsub_of(proxy, redis)
        await until(lambda: user_channels_state(gateway).startswith("down"), "the pub/sub connection is lost")

        published = gateway.metric("gateway_ws_deliveries_total")
        resyncs = gateway.metric("gateway_ws_resyncs_total")
        await sender.send(
            {"type": "message.send", "chat_id": str(chat), "client_msg_id": "in-the-gap", "text": "lost in the gap"}
        )
        await until(lambda: gateway.metric("gateway_ws_deliveries_total") > published, "the delivery is published")

        proxy.refusing = False
        await until(lambda: gateway.metric("gateway_ws_resyncs_total") > resyncs, "the sockets are resynced")
        await asyncio.sleep(0.5)
        assert not [f for f in await reader.drain() if f["type"] == "message.new"], "not in PostgreSQL yet"
    finally:
        proxy.refusing = False
        projections.popen.send_signal(signal.SIGCONT)
        await redis.aclose()

    got = await reader.expect("message.new", timeout=WAIT_S)
    assert (got["message"]["client_msg_id"], got["message"]["text"]) == ("in-the-gap", "lost in the gap")
    await sender.expect("message.ack", timeout=WAIT_S)
    assert not [f for f in await reader.drain(quiet=1.0) if f["type"] == "message.new"], "given once"
    await asyncio.gather(sender.close(), reader.close())
