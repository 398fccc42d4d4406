"""The whole system as processes (a streams worker, a projections worker, gateways), and WebSocket
clients to talk to it, for the end-to-end tests.

    async with gateway_system(prefix, log_dir, jwt_secret, database_url) as system:
        alice = await system.connect(system.gateways[0], alice_id)
        await alice.send({"type": "ping"})
        await alice.expect("pong")

Users need not be registered: tokens are minted with the test's JWT secret, each in a session
(a refresh family) opened in the gateways' Redis as a login would, and chats are created
by sending `CreateChat` commands through a command bus (the deciding agent checks membership, not
that users exist), then waiting until the chat is in the read model.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer

from config.kafka import client_options
from config.settings import GatewaySettings
from gateway.auth.refresh_tokens import Grant, RefreshTokenStore, key_prefix
from gateway.auth.tokens import issue_access_token
from gateway.infra.command_bus import CommandBus
from gateway.infra.consistency import ProjectionWatermarks
from schemas import topics
from schemas.commands import CreateChat
from schemas.models import direct_chat_id
from streams.topics import create_topics
from tests.conftest import cloned_database
from tests.processes import Process, free_port, start, wait_http

Frame = dict[str, Any]
FRAME_TIMEOUT_S = 10.0
WORKER_READY_S = 90.0
WORKER_READY_LINE = "[^Worker]: Ready"


class Client:
    """One WebSocket of one user, with an inbox so that tests can wait for a frame of a type
    while others (presence, chat.updated, ...) arrive around it."""

    def __init__(self, user_id: uuid.UUID, socket: aiohttp.ClientWebSocketResponse, label: str) -> None:
        self.user_id = user_id
        self.socket = socket
        self.label = label
        self.inbox: list[Frame] = []

    async def send(self, frame: Frame) -> None:
        await self.socket.send_str(json.dumps(frame))

    async def send_raw(self, text: str) -> None:
        await self.socket.send_str(text)

    async def receive(self, timeout: float = FRAME_TIMEOUT_S) -> Frame:
        message = await self.socket.receive(timeout)
        if message.type is not aiohttp.WSMsgType.TEXT:
            raise ConnectionError(f"{self.label}: {message.type.name} {message.data!r} {message.extra!r}")
        frame: Frame = json.loads(message.data)
        return frame

    async def expect(
        self, type_: str, match: Callable[[Frame], bool] = lambda f: True, timeout: float = FRAME_TIMEOUT_S
    ) -> Frame:
        """The first frame of `type_` that `match`es, from the inbox or the socket; the frames
        read past on the way stay in the inbox."""
        for i, frame in enumerate(self.inbox):
            if frame["type"] == type_ and match(frame):
                return self.inbox.pop(i)
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError(f"{self.label}: no {type_} frame in {timeout} s; inbox: {self.inbox[-5:]}")
            try:
                frame = await self.receive(left)
            except TimeoutError:
                continue
            if frame["type"] == type_ and match(frame):
                return frame
            self.inbox.append(frame)

    async def drain(self, quiet: float = 0.3) -> list[Frame]:
        """Everything that arrives until nothing has for `quiet` seconds, inbox included."""
        frames, self.inbox = self.inbox, []
        while True:
            try:
                frames.append(await self.receive(quiet))
            except TimeoutError:
                return frames

    async def close_code(self, timeout: float = FRAME_TIMEOUT_S) -> int | None:
        """Read (and drop) frames until the server closes the socket; its close code."""
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            message = await self.socket.receive(deadline - asyncio.get_running_loop().time())
            if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                return self.socket.close_code
            if message.type is aiohttp.WSMsgType.ERROR:
                return self.socket.close_code
        raise AssertionError(f"{self.label}: still open after {timeout} s")

    async def close(self) -> None:
        await self.socket.close()


@dataclass
class Gateway:
    process: Process
    port: int
    instance_id: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"{self.url}/api/v1/ws"

    def metric(self, name: str) -> float:
        """The sum of every sample of a Prometheus metric on this gateway's /metrics."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as response:
            text = response.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and line[len(name) : len(name) + 1] in (" ", "{"):
                total += float(line.rsplit(" ", 1)[1])
        return total


@dataclass
class GatewaySystem:
    settings: GatewaySettings
    log_dir: Path
    producer: AIOKafkaProducer
    bus: CommandBus
    watermarks: ProjectionWatermarks
    http: aiohttp.ClientSession
    refresh_tokens: RefreshTokenStore
    """The gateways' own refresh tokens (same Redis, same keys)."""
    workers: list[Process] = field(default_factory=list)
    gateways: list[Gateway] = field(default_factory=list)
    worker_health: dict[str, str] = field(default_factory=dict)
    """The `/healthz` of each worker by name, which the gateways report in theirs."""
    extra_gateway_env: dict[str, str] = field(default_factory=dict)
    """Settings of this system's gateways beyond the defaults (e.g. smaller limits)."""

    async def session(self, user_id: uuid.UUID) -> Grant:
        """A new session of `user_id` (a refresh family), as a login opens."""
        return await self.refresh_tokens.issue(user_id)

    async def token(self, user_id: uuid.UUID, session_id: str | None = None, lifetime_s: int | None = None) -> str:
        """An access token of `user_id` in `session_id` (in a new session if None), valid for the
        gateways' access token TTL or `lifetime_s` (tests may go below the settings' minimum)."""
        if session_id is None:
            session_id = (await self.session(user_id)).session_id
        settings = self.settings
        if lifetime_s is not None:
            settings = settings.model_copy(update={"access_token_ttl_seconds": lifetime_s})
        return issue_access_token(settings, user_id, session_id)[0]

    def gateway_env(self, instance_id: str, port: int) -> dict[str, str]:
        return {
            **self.common_env(),
            "GATEWAY_PORT": str(port),
            "GATEWAY_INSTANCE_ID": instance_id,
            "JWT_SECRET": self.settings.jwt_secret,
            "WORKER_HEALTH_URLS": ",".join(f"{name}={url}" for name, url in self.worker_health.items()),
            **self.extra_gateway_env,
        }

    def common_env(self) -> dict[str, str]:
        return {
            "TOPIC_PREFIX": self.settings.topic_prefix,
            "TOPIC_PARTITIONS": str(self.settings.topic_partitions),
            "DATABASE_URL": self.settings.database_url,
            "LOG_LEVEL": "INFO",
        }

    def launch_gateway(self, instance_id: str) -> Gateway:
        port = free_port()
        process = start(f"gateway-{instance_id}", ["gateway"], self.gateway_env(instance_id, port), self.log_dir)
        return Gateway(process, port, instance_id)

    async def start_gateway(self, instance_id: str) -> Gateway:
        gateway = self.launch_gateway(instance_id)
        await asyncio.to_thread(wait_http, gateway.process, f"{gateway.url}/healthz", WORKER_READY_S)
        self.gateways.append(gateway)
        return gateway

    def processes(self) -> list[Process]:
        """The gateways' and workers' processes started so far."""
        return [g.process for g in self.gateways] + self.workers

    def launch_worker(self, name: str, module: str) -> tuple[Process, int]:
        port = free_port()
        env = {**self.common_env(), "WORKER_WEB_PORT": str(port), "WORKER_DATA_DIR": str(self.log_dir / "faust" / name)}
        worker = start(name, [module, "worker", "-l", "info", "--web-port", str(port)], env, self.log_dir)
        self.workers.append(worker)
        self.worker_health[name] = f"http://127.0.0.1:{port}/healthz"
        return worker, port

    async def connect(
        self,
        gateway: Gateway,
        user_id: uuid.UUID,
        *,
        label: str = "",
        via_query: bool = False,
        headers: dict[str, str] | None = None,
        token: str | None = None,
        **options: Any,
    ) -> Client:
        """A socket of `user_id` opened with `token` (a new session's token if None)."""
        if token is None:
            token = await self.token(user_id)
        all_headers = dict(headers or {})
        params = {}
        if via_query:
            params["token"] = token
        else:
            all_headers["Authorization"] = f"Bearer {token}"
        socket = await self.http.ws_connect(gateway.ws_url, headers=all_headers, params=params, **options)
        return Client(user_id, socket, label or str(user_id)[:8])

    async def create_chat(self, owner: uuid.UUID, others: list[uuid.UUID], *, direct: bool = False) -> uuid.UUID:
        """A chat in the read models (waits for its projection), created by `owner`."""
        chat_id = direct_chat_id(self.settings.chat_id_key.encode(), owner, others[0]) if direct else uuid.uuid4()
        body = CreateChat(
            chat_id=chat_id, type="direct" if direct else "group", title=None if direct else "g", member_ids=others
        )
        reply = await self.bus.ask(topics.CHAT_COMMANDS, str(chat_id), body, owner)
        assert reply.ok, reply
        assert await self.watermarks.wait_for(reply.positions), "the chat was not projected in time"
        return chat_id


async def wait_worker_ready(worker: Process, port: int, timeout: float = WORKER_READY_S) -> None:
    """Up, and past its first assignment (Faust logs `[^Worker]: Ready` once its partitions are
    recovered): commands and events are processed from now on."""
    await asyncio.to_thread(wait_http, worker, f"http://127.0.0.1:{port}/healthz", timeout)
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if WORKER_READY_LINE in worker.log():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{worker.name} was not ready in {timeout} s:\n{worker.log()[-3000:]}")


async def wait_delivery_assigned(gateways: list[Gateway], partitions: int, timeout: float = 30.0) -> None:
    """Every partition of message.delivered consumed by one of `gateways`: the group is stable."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if sum(g.metric("gateway_ws_delivery_partitions") for g in gateways) == partitions:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the delivery group did not settle on {partitions} partitions in {timeout} s")


@asynccontextmanager
async def gateway_system(
    prefix: str,
    log_dir: Path,
    jwt_secret: str,
    database_url: str,
    *,
    gateways: int = 2,
    partitions: int = 4,
    gateway_env: dict[str, str] | None = None,
    streams_workers: int = 1,
) -> AsyncIterator[GatewaySystem]:
    """Topics, one streams worker, one projections worker and `gateways` gateways (`gw-a`, `gw-b`,
    ...), all started at once, then `streams_workers - 1` more streams workers (`streams-b`, ...) of
    the same app; stopped (SIGTERM to all at once) on exit.

    The other streams workers join once the first is ready: started with it on new topics, the group's
    first assignment can be made before every table's changelog topic exists, and the changelog's
    partitions are then assigned to nobody until the next rebalance (faust-streaming 0.15)."""
    settings = GatewaySettings(
        topic_prefix=prefix, topic_partitions=partitions, jwt_secret=jwt_secret, database_url=database_url
    )
    await create_topics(settings)
    producer = AIOKafkaProducer(**client_options(settings), acks="all", enable_idempotence=True, linger_ms=2)
    await producer.start()
    bus = CommandBus(settings, producer, f"test-{uuid.uuid4().hex[:6]}")
    await bus.start()
    watermarks = ProjectionWatermarks(database_url)
    await watermarks.start()
    http = aiohttp.ClientSession()
    redis = aioredis.from_url(settings.redis_url)
    refresh_tokens = RefreshTokenStore(redis, settings.refresh_token_ttl_seconds, prefix=key_prefix(prefix))
    system = GatewaySystem(
        settings, log_dir, producer, bus, watermarks, http, refresh_tokens, extra_gateway_env=dict(gateway_env or {})
    )
    launched: list[Gateway] = []  # every gateway started, also one that never answered: all are stopped
    try:
        workers = [system.launch_worker("streams", "streams"), system.launch_worker("projections", "projections")]
        launched.extend(system.launch_gateway(f"gw-{chr(ord('a') + i)}") for i in range(gateways))
        await asyncio.gather(
            *(wait_worker_ready(worker, port) for worker, port in workers),
            *(asyncio.to_thread(wait_http, g.process, f"{g.url}/healthz", WORKER_READY_S) for g in launched),
        )
        system.gateways.extend(launched)
        more = [system.launch_worker(f"streams-{chr(ord('a') + i)}", "streams") for i in range(1, streams_workers)]
        await asyncio.gather(*(wait_worker_ready(worker, port) for worker, port in more))
        await wait_delivery_assigned(system.gateways, partitions)
        yield system
    finally:
        try:
            await http.close()
            await redis.aclose()
            await watermarks.stop()
            await bus.stop()
            await producer.stop()
        finally:
            stop_all([g.process for g in launched if g not in system.gateways] + system.processes())


def stop_all(processes: list[Process]) -> None:
    """SIGTERM to every process at once, then wait for each (SIGKILL after its grace time)."""
    for process in processes:
        if process.popen.poll() is None:
            process.popen.send_signal(signal.SIGTERM)
    for process in processes:
        process.stop()


@asynccontextmanager
async def module_system(
    name: str,
    topic_prefix: str,
    tmp_path_factory: pytest.TempPathFactory,
    jwt_secret: str,
    template_database: str,
    gateway_env: dict[str, str] | None = None,
    *,
    gateways: int = 2,
    streams_workers: int = 1,
) -> AsyncIterator[GatewaySystem]:
    """A system of one test module's own: topics under `<topic_prefix><name>.`, a clone of the
    template database, and its processes' logs in a temporary folder named `name`."""
    log_dir = tmp_path_factory.mktemp(name)
    async with (
        cloned_database(template_database) as database_url,
        gateway_system(
            f"{topic_prefix}{name}.",
            log_dir,
            jwt_secret,
            database_url,
            gateway_env=gateway_env,
            gateways=gateways,
            streams_workers=streams_workers,
        ) as system,
    ):
        yield system


def small_receive_buffer(size: int) -> Callable[[Any], socket.socket]:
    """A socket factory for aiohttp's connector whose sockets have a small receive buffer: a
    client that stops reading fills it (and the server's buffers) quickly."""

    def factory(addr_info: Any) -> socket.socket:
        family, type_, proto, _, _ = addr_info
        sock = socket.socket(family=family, type=type_, proto=proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
        return sock

    return factory
