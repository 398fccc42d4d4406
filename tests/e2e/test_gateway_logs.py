"""`python -m gateway`'s log as an operator reads it: one JSON object per line, one access line per
request with its request id (the one the client sent, echoed back) and its user, and never the
WebSocket's `token` query parameter. A gateway alone (no workers) against the real services."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from config.settings import GatewaySettings
from gateway.access_log import REQUEST_ID_HEADER
from gateway.auth.refresh_tokens import RefreshTokenStore, key_prefix
from gateway.auth.tokens import issue_access_token
from streams.topics import create_topics
from tests.conftest import cloned_database
from tests.processes import Process, free_port, start, wait_http

pytestmark = pytest.mark.e2e

LINE_WAIT_S = 10.0


@dataclass
class LoggedGateway:
    settings: GatewaySettings
    process: Process
    url: str

    def lines(self) -> list[dict[str, Any]]:
        """Every line of its log, each of which must be a JSON object."""
        return [json.loads(line) for line in self.process.log().splitlines() if line.strip()]

    async def access_line(self, request_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + LINE_WAIT_S
        while time.monotonic() < deadline:
            found = [
                line
                for line in self.lines()
                if line["logger"] == "gateway.access" and line.get("request_id") == request_id
            ]
            if found:
                [line] = found
                return line
            await asyncio.sleep(0.1)
        raise AssertionError(f"no access line of {request_id}:\n{self.process.log()[-3000:]}")

    async def token(self, user_id: uuid.UUID) -> str:
        """An access token in a live session, as a login makes."""
        redis = aioredis.from_url(self.settings.redis_url)
        try:
            store = RefreshTokenStore(
                redis, self.settings.refresh_token_ttl_seconds, prefix=key_prefix(self.settings.topic_prefix)
            )
            grant = await store.issue(user_id)
        finally:
            await redis.aclose()
        return issue_access_token(self.settings, user_id, grant.session_id)[0]


@pytest.fixture(scope="module")
async def gateway(
    topic_prefix: str, tmp_path_factory: pytest.TempPathFactory, jwt_secret: str, template_database: str
) -> AsyncIterator[LoggedGateway]:
    async with cloned_database(template_database) as database_url:
        settings = GatewaySettings(
            topic_prefix=f"{topic_prefix}logs.", topic_partitions=2, jwt_secret=jwt_secret, database_url=database_url
        )
        await create_topics(settings)
        port = free_port()
        env = {
            "TOPIC_PREFIX": settings.topic_prefix,
            "TOPIC_PARTITIONS": "2",
            "DATABASE_URL": database_url,
            "JWT_SECRET": jwt_secret,
            "GATEWAY_PORT": str(port),
            "GATEWAY_INSTANCE_ID": "logs",
            "WORKER_HEALTH_URLS": "",
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO",
        }
        process = start("gateway-logs", ["gateway"], env, tmp_path_factory.mktemp("logs"))
        try:
            await asyncio.to_thread(wait_http, process, f"http://127.0.0.1:{port}/healthz", 60)
            yield LoggedGateway(settings, process, f"http://127.0.0.1:{port}")
        finally:
            process.stop()


async def test_every_request_has_one_access_line_with_its_id_and_user_and_the_token_is_never_logged(
    gateway: LoggedGateway,
) -> None:
    user_id = uuid.uuid4()
    token = await gateway.token(user_id)
    ids = {name: f"e2e-{name}-{uuid.uuid4().hex[:8]}" for name in ("health", "chats", "socket", "refused")}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{gateway.url}/healthz", headers={REQUEST_ID_HEADER: ids["health"]}) as health:
            assert health.status == 200 and health.headers[REQUEST_ID_HEADER] == ids["health"]
        chats_headers = {REQUEST_ID_HEADER: ids["chats"], "Authorization": f"Bearer {token}"}
        async with http.get(f"{gateway.url}/api/v1/chats", headers=chats_headers) as chats:
            assert chats.status == 200 and chats.headers[REQUEST_ID_HEADER] == ids["chats"]
        socket = await http.ws_connect(
            f"{gateway.url}/api/v1/ws", params={"token": token}, headers={REQUEST_ID_HEADER: ids["socket"]}
        )
        await socket.send_json({"type": "ping"})
        assert (await socket.receive_json(timeout=10))["type"] == "pong"
        await socket.close()
        refused = await http.get(
            f"{gateway.url}/api/v1/ws", params={"token": token + "x"}, headers={REQUEST_ID_HEADER: ids["refused"]}
        )
        assert refused.status == 401

    health_line = await gateway.access_line(ids["health"])
    assert {k: health_line[k] for k in ("level", "method", "path", "status")} == {
        "level": "INFO",
        "method": "GET",
        "path": "/healthz",
        "status": 200,
    }
    assert health_line["duration_ms"] >= 0 and health_line["bytes"] > 0 and "user_id" not in health_line
    chats_line = await gateway.access_line(ids["chats"])
    assert (chats_line["path"], chats_line["status"], chats_line["user_id"]) == ("/api/v1/chats", 200, str(user_id))
    socket_line = await gateway.access_line(ids["socket"])
    assert (socket_line["path"], socket_line["status"], socket_line["user_id"]) == ("/api/v1/ws", 101, str(user_id))
    refused_line = await gateway.access_line(ids["refused"])
    assert (refused_line["path"], refused_line["status"]) == ("/api/v1/ws", 401)

    log = gateway.process.log()
    assert token not in log and token[-20:] not in log
    assert "token=" not in log and "?" not in "".join(line.get("path", "") for line in gateway.lines())
