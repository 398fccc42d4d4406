"""A client of the public contract (REST + WebSocket), as an outside program would write it."""

from __future__ import annotations

import asyncio
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import ClientSession, ClientWebSocketResponse, TCPConnector

PASSWORD = "bench-password-1"


@dataclass
class BenchUser:
    id: str
    username: str
    token: str


class Client:
    """REST calls go to `base_url`; sockets to `socket_urls` in turn (by the caller's index), so
    that a bench over several gateways spreads its users across them (default: `base_url` alone)."""

    def __init__(self, base_url: str, socket_urls: Sequence[str] = ()) -> None:
        self.base = base_url.rstrip("/")
        self.socket_bases = [url.rstrip("/") for url in socket_urls] or [self.base]
        self.http = ClientSession(connector=TCPConnector(limit=0), json_serialize=lambda v: orjson.dumps(v).decode())

    async def close(self) -> None:
        await self.http.close()

    async def call(self, method: str, path: str, token: str | None = None, json: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.http.request(method, self.base + path, headers=headers, json=json) as response:
            body = await response.read()
            return response.status, orjson.loads(body) if body else None

    async def user(self, username: str) -> BenchUser:
        """Register (or reuse) `username` and log in."""
        status, body = await self.call(
            "POST", "/api/v1/auth/register", json={"username": username, "password": PASSWORD}
        )
        if status == 429:
            raise RuntimeError(
                "registration is throttled per address: run the system for the benchmark with "
                "REGISTER_LIMIT_PER_ADDRESS=100000 (the benchmark registers its users from one address)"
            )
        if status not in (201, 409):
            raise RuntimeError(f"register {username}: {status} {body}")
        status, body = await self.call("POST", "/api/v1/auth/login", json={"username": username, "password": PASSWORD})
        if status != 200:
            raise RuntimeError(f"login {username}: {status} {body}")
        return BenchUser(body["user"]["id"], username, body["access_token"])

    async def users(self, prefix: str, count: int, parallel: int = 8) -> list[BenchUser]:
        gate = asyncio.Semaphore(parallel)

        async def one(i: int) -> BenchUser:
            async with gate:
                return await self.user(f"{prefix}{i}")

        return list(await asyncio.gather(*(one(i) for i in range(count))))

    async def chat(
        self, owner: BenchUser, members: list[BenchUser], kind: str = "direct", title: str | None = None
    ) -> str:
        body: dict[str, Any] = {"type": kind, "member_ids": [m.id for m in members]}
        if title:
            body["title"] = title
        status, answer = await self.call("POST", "/api/v1/chats", owner.token, json=body)
        if status not in (200, 201):
            raise RuntimeError(f"create chat: {status} {answer}")
        return str(answer["chat"]["id"])

    async def socket(self, user: BenchUser, index: int = 0) -> ClientWebSocketResponse:
        """A socket of `user` on the `index`-th of the socket URLs, counted round."""
        base = self.socket_bases[index % len(self.socket_bases)]
        return await self.http.ws_connect(
            f"{base}/api/v1/ws",
            headers={"Authorization": f"Bearer {user.token}"},
            heartbeat=None,
            max_msg_size=0,
        )


def send_frame(chat_id: str, text: str) -> tuple[str, str]:
    """A `message.send` frame and its client_msg_id."""
    client_msg_id = uuid.uuid4().hex
    return client_msg_id, orjson.dumps(
        {"type": "message.send", "chat_id": chat_id, "client_msg_id": client_msg_id, "text": text}
    ).decode()


def healthy(base_url: str) -> bool:
    """Whether the gateway at `base_url` answers /healthz with 200 (itself, its services, its workers)."""
    try:
        with urllib.request.urlopen(f"{base_url}/healthz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False
