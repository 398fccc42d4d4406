"""The load of the fault suite: users who chat over REST and WebSocket exactly as the contract
tells a client to, and who write down everything they see for the checkers.

Each `ChatClient` keeps one WebSocket open (reconnecting with backoff whenever it drops, refreshing
its token or logging in again when told to), sends messages at its share of the rate, each with a
fresh `client_msg_id`, and resends a message with the same `client_msg_id` until it is acked: when
no answer came in `ACK_TIMEOUT_S`, after an `error` frame naming it (`unavailable`, `rate_limited`),
and after every reconnect. After each (re)connect it `sync`s each of its chats from the last `seq`
it holds without a gap. It never syncs otherwise: a socket that silently misses a live message
stays short of it, which is what the missing-delivery checker is there to see.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp

PASSWORD = "chaos-password-1"
ACK_TIMEOUT_S = 15.0
"""The gateway answers `unavailable` after its own 10 s wait; with no answer at all after 15 s the
frame (or its answer) was lost, and the client sends it again."""
RETRY_BACKOFF_S = (0.5, 5.0)
"""First and longest pause before resending after an `unavailable` (doubling in between)."""
CONNECT_BACKOFF_S = (0.25, 4.0)
"""First and longest pause between attempts to open a socket (doubling, with jitter)."""
CONNECT_TIMEOUT_S = 10.0
HEARTBEAT_S = 10.0
"""aiohttp pings every 10 s and drops a socket whose pong is 5 s late: a half-open socket is noticed."""
FRAMES_PER_S = 20.0
FRAME_BURST = 10.0
"""The client paces its own frames well below the server's budget (40/s, bursts of 80): a
`rate_limited` then means the server punished a client that never sent too fast."""
REFRESH_MARGIN_S = 30.0
WRITER_TICK_S = 0.02
REST_ATTEMPTS = 20
REST_TIMEOUT_S = 15.0

Key = tuple[str, int]
"""(chat_id, seq): how a client recognises a message."""

CONNECTION_IDS = itertools.count(1)


@dataclass(frozen=True)
class Ack:
    chat_id: str
    seq: int
    message_id: str
    at: float
    connection: int


@dataclass
class Send:
    """One message the client wants stored, with every attempt at it."""

    cmid: str
    chat_id: str
    text: str
    created: float
    due: float
    attempts: int = 0
    refusals: int = 0
    sent_at: dict[int, list[float]] = field(default_factory=dict)
    """Per socket, when the client sent it there."""
    acks: list[Ack] = field(default_factory=list)

    @property
    def ack(self) -> Ack | None:
        return self.acks[0] if self.acks else None

    @property
    def sent_on(self) -> set[int]:
        return set(self.sent_at)

    def sent(self, connection: int, at: float) -> None:
        self.sent_at.setdefault(connection, []).append(at)


@dataclass
class SocketLog:
    """What one WebSocket connection received and when, for the delivery checkers."""

    id: int
    user_id: str
    opened: float
    closed: float | None = None
    close_code: int | None = None
    live: dict[Key, list[float]] = field(default_factory=dict)
    """When each message.new arrived outside a sync of its chat."""
    acked: dict[Key, list[float]] = field(default_factory=dict)
    synced: set[Key] = field(default_factory=set)
    """message.new frames while a sync of their chat was running (a sync page, or a push racing it)."""
    syncing: Counter[str] = field(default_factory=Counter)

    def received(self, key: Key) -> bool:
        return key in self.live or key in self.acked or key in self.synced

    def on_new(self, key: Key, at: float) -> None:
        if self.syncing[key[0]] > 0:
            self.synced.add(key)
        else:
            self.live.setdefault(key, []).append(at)

    def on_ack(self, key: Key, at: float) -> None:
        self.acked.setdefault(key, []).append(at)


@dataclass
class Sightings:
    """When any client first saw each message (ack, push or sync): a message the system had
    plainly delivered somewhere by then was due on every open socket of its chat's members."""

    first: dict[Key, float] = field(default_factory=dict)

    def saw(self, key: Key, at: float) -> None:
        if key not in self.first:
            self.first[key] = at


@dataclass
class Account:
    username: str
    user_id: str = ""
    access_token: str = ""
    refresh_token: str = ""
    access_expires: float = 0.0


class TokenBucket:
    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst, self.tokens, self.stamp = rate, burst, burst, time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


def backoff(attempt: int, bounds: tuple[float, float]) -> float:
    first, longest = bounds
    return float(min(longest, first * 2.0 ** min(attempt, 10)) * random.uniform(0.8, 1.2))


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


class Rest:
    """The REST side of the contract for one account: register, log in, refresh, and calls that
    renew the token on 401 and wait out 429/5xx, each bounded."""

    def __init__(self, http: aiohttp.ClientSession, base_url: str, account: Account, errors: Counter[str]) -> None:
        self.http, self.base, self.account, self.errors = http, base_url, account, errors

    async def raw(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any, float]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.http.request(
            method, self.base + path, json=body, headers=headers, timeout=aiohttp.ClientTimeout(total=REST_TIMEOUT_S)
        ) as response:
            text = await response.text()
            retry_after = float(response.headers.get("Retry-After", "1") or 1)
            return response.status, json.loads(text) if text else None, retry_after

    async def register(self) -> None:
        body = {"username": self.account.username, "password": PASSWORD}
        status, answer = await self.call_anonymous("POST", "/api/v1/auth/register", body, ok=(201, 409))
        if status == 201:
            self.account.user_id = answer["user"]["id"]

    async def login(self) -> None:
        body = {"username": self.account.username, "password": PASSWORD}
        _, answer = await self.call_anonymous("POST", "/api/v1/auth/login", body, ok=(200,))
        self.take_tokens(answer)
        self.account.user_id = answer["user"]["id"]

    async def refresh(self) -> None:
        """A new token pair; when the refresh token is refused (e.g. Redis lost it), log in again."""
        try:
            status, answer = await self.call_anonymous(
                "POST", "/api/v1/auth/refresh", {"refresh_token": self.account.refresh_token}, ok=(200, 401)
            )
        except RuntimeError:
            status, answer = 0, None
        if status == 200:
            self.take_tokens(answer)
            return
        self.errors["relogin"] += 1
        await self.login()

    def take_tokens(self, answer: dict[str, Any]) -> None:
        self.account.access_token = answer["access_token"]
        self.account.refresh_token = answer["refresh_token"]
        self.account.access_expires = time.time() + float(answer["expires_in"])

    async def fresh_token(self) -> str:
        if time.time() > self.account.access_expires - REFRESH_MARGIN_S:
            await self.refresh()
        return self.account.access_token

    async def call_anonymous(self, method: str, path: str, body: Any, ok: tuple[int, ...]) -> tuple[int, Any]:
        return await self.call(method, path, body, ok, authenticated=False)

    async def call(
        self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200,), authenticated: bool = True
    ) -> tuple[int, Any]:
        """Retries what a client retries (network errors, 429, 5xx, an expired token); any other
        status outside `ok` is a RuntimeError."""
        last = ""
        for attempt in range(REST_ATTEMPTS):
            try:
                token = await self.fresh_token() if authenticated else None
                status, answer, retry_after = await self.raw(method, path, body, token)
            except (aiohttp.ClientError, OSError, TimeoutError) as error:
                self.errors[f"rest:{type(error).__name__}"] += 1
                last = repr(error)
                await asyncio.sleep(backoff(attempt, CONNECT_BACKOFF_S))
                continue
            if status in ok:
                return status, answer
            last = f"{status} {answer}"
            self.errors[f"rest:{status}"] += 1
            if status == 401 and authenticated:
                await self.refresh()
            elif status == 429 or status >= 500:
                await asyncio.sleep(min(retry_after, 10.0) if status == 429 else backoff(attempt, CONNECT_BACKOFF_S))
            else:
                break
        raise RuntimeError(f"{method} {path}: {last}")


class ChatClient:
    """One user with one WebSocket at a time, sending `rate` messages a second over `chats`."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        base_url: str,
        account: Account,
        chats: list[str],
        rate: float,
        sightings: Sightings,
    ) -> None:
        self.http, self.base, self.account = http, base_url, account
        self.chats, self.rate, self.sightings = chats, rate, sightings
        self.errors: Counter[str] = Counter()
        self.rest = Rest(http, base_url, account, self.errors)
        self.sends: list[Send] = []
        self.pending: dict[str, Send] = {}
        self.by_cmid: dict[str, Send] = {}
        self.sockets: list[SocketLog] = []
        self.held: dict[str, set[int]] = {chat: set() for chat in chats}
        self.generating = asyncio.Event()
        self.finished = asyncio.Event()
        self.connected = asyncio.Event()
        self.bucket = TokenBucket(FRAMES_PER_S, FRAME_BURST)
        self.tasks: list[asyncio.Task[None]] = []

    # --- life -----------------------------------------------------------------------------------
    def start(self) -> None:
        self.generating.set()
        self.tasks = [asyncio.create_task(self.generate()), asyncio.create_task(self.stay_connected())]

    def stop_generating(self) -> None:
        self.generating.clear()

    async def finish(self) -> None:
        """Close the socket and stop; sockets are closed by the client, so their end is known."""
        self.generating.clear()
        self.finished.set()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    # --- what it sends ---------------------------------------------------------------------------
    async def generate(self) -> None:
        interval = 1.0 / self.rate
        await asyncio.sleep(random.uniform(0, interval))
        count = 0
        while self.generating.is_set():
            count += 1
            now = time.time()
            send = Send(uuid.uuid4().hex, random.choice(self.chats), f"{self.account.username} #{count}", now, now)
            self.sends.append(send)
            self.pending[send.cmid] = send
            self.by_cmid[send.cmid] = send
            await asyncio.sleep(interval)

    def oldest_pending_age(self, now: float) -> float:
        return max((now - s.created for s in self.pending.values()), default=0.0)

    # --- the socket ------------------------------------------------------------------------------
    async def stay_connected(self) -> None:
        attempt = 0
        while not self.finished.is_set():
            socket = await self.open_socket()
            if socket is None:
                attempt += 1
                await self.pause(backoff(attempt, CONNECT_BACKOFF_S))
                continue
            attempt = 0
            await self.serve(*socket)
            if not self.finished.is_set():
                await self.pause(backoff(0, CONNECT_BACKOFF_S))

    async def pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.finished.wait(), seconds)

    async def open_socket(self) -> tuple[aiohttp.ClientWebSocketResponse, SocketLog] | None:
        try:
            token = await self.rest.fresh_token()
            ws = await asyncio.wait_for(
                self.http.ws_connect(
                    f"{self.base}/api/v1/ws",
                    headers={"Authorization": f"Bearer {token}"},
                    heartbeat=HEARTBEAT_S,
                    max_msg_size=0,
                    timeout=aiohttp.ClientWSTimeout(ws_close=3.0),
                ),
                CONNECT_TIMEOUT_S,
            )
        except aiohttp.WSServerHandshakeError as error:
            self.errors[f"connect:{error.status}"] += 1
            if error.status == 401:
                await self.safe_refresh()
            return None
        except (aiohttp.ClientError, OSError, TimeoutError, RuntimeError) as error:
            self.errors[f"connect:{type(error).__name__}"] += 1
            return None
        log = SocketLog(next(CONNECTION_IDS), self.account.user_id, time.time())
        self.sockets.append(log)
        return ws, log

    async def safe_refresh(self) -> None:
        try:
            await self.rest.refresh()
        except RuntimeError:
            self.errors["refresh_failed"] += 1

    async def serve(self, ws: aiohttp.ClientWebSocketResponse, log: SocketLog) -> None:
        """Sync, resend what is pending, then read and write until the socket ends or the client
        finishes; the socket's end time is when the client learned of it."""
        self.connected.set()
        for send in self.pending.values():
            send.due = min(send.due, time.time())
        writer = asyncio.create_task(self.write(ws, log))
        reader = asyncio.create_task(self.read(ws, log))
        finished = asyncio.create_task(self.finished.wait())
        await asyncio.wait([reader, finished], return_when=asyncio.FIRST_COMPLETED)
        self.connected.clear()
        log.closed = time.time()
        writer.cancel()
        finished.cancel()
        if not reader.done():
            await ws.close()
        await asyncio.gather(reader, writer, finished, return_exceptions=True)
        log.close_code = ws.close_code
        if not self.finished.is_set():
            self.errors[f"close:{ws.close_code}"] += 1
            if ws.close_code == 4001:
                await self.safe_refresh()

    async def write(self, ws: aiohttp.ClientWebSocketResponse, log: SocketLog) -> None:
        try:
            for chat in self.chats:
                log.syncing[chat] += 1
                await ws.send_str(json.dumps({"type": "sync", "chat_id": chat, "after_seq": self.contiguous(chat)}))
            while not ws.closed:
                now = time.time()
                for send in list(self.pending.values()):
                    if send.due > now or not self.bucket.take():
                        continue
                    send.due = now + ACK_TIMEOUT_S
                    send.attempts += 1
                    send.sent(log.id, now)
                    await ws.send_str(
                        json.dumps(
                            {
                                "type": "message.send",
                                "chat_id": send.chat_id,
                                "client_msg_id": send.cmid,
                                "text": send.text,
                            }
                        )
                    )
                await asyncio.sleep(WRITER_TICK_S)
        except (ConnectionError, RuntimeError, aiohttp.ClientError):
            return

    def contiguous(self, chat: str) -> int:
        """The last seq of the chat this client holds with none missing before it."""
        held, seq = self.held[chat], 0
        while seq + 1 in held:
            seq += 1
        return seq

    async def read(self, ws: aiohttp.ClientWebSocketResponse, log: SocketLog) -> None:
        async for message in ws:
            if message.type is aiohttp.WSMsgType.TEXT:
                self.on_frame(json.loads(message.data), log)
            elif message.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                return

    # --- what it receives ----------------------------------------------------------------------------
    def on_frame(self, frame: dict[str, Any], log: SocketLog) -> None:
        kind = frame.get("type")
        now = time.time()
        if kind == "message.new":
            key = self.hold(frame["message"], now)
            log.on_new(key, now)
        elif kind == "message.ack":
            self.on_ack(frame, log, now)
        elif kind == "sync.done":
            log.syncing[frame["chat_id"]] -= 1
        elif kind == "error":
            self.on_error(frame, now)

    def hold(self, message: dict[str, Any], now: float) -> Key:
        key = (str(message["chat_id"]), int(message["seq"]))
        self.held.setdefault(key[0], set()).add(key[1])
        self.sightings.saw(key, now)
        return key

    def on_ack(self, frame: dict[str, Any], log: SocketLog, now: float) -> None:
        message = frame["message"]
        key = self.hold(message, now)
        log.on_ack(key, now)
        send = self.by_cmid.get(frame["client_msg_id"])
        if send is None:
            self.errors["ack_of_unknown_send"] += 1
            return
        send.acks.append(Ack(key[0], key[1], str(message["id"]), now, log.id))
        self.pending.pop(send.cmid, None)

    def on_error(self, frame: dict[str, Any], now: float) -> None:
        code = str(frame.get("code"))
        self.errors[code] += 1
        send = self.pending.get(str(frame.get("ref")))
        if send is None:
            return
        send.refusals += 1
        if code == "rate_limited":
            send.due = now + float(frame.get("retry_after_ms") or 1000) / 1000
        elif code == "unavailable":
            send.due = now + backoff(send.refusals - 1, RETRY_BACKOFF_S)
        else:
            send.due = now + RETRY_BACKOFF_S[1]
