"""The measured scenarios. Each drives the running system through REST and WebSocket only."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import ClientWebSocketResponse, WSMsgType

from bench.client import BenchUser, Client, send_frame
from bench.stats import summarize


@dataclass
class Tracker:
    """Send times by client_msg_id, and what came back: acks at the sender, news at recipients."""

    sent_at: dict[str, float] = field(default_factory=dict)
    ack: list[float] = field(default_factory=list)
    delivered: list[float] = field(default_factory=list)
    acked_ids: set[str] = field(default_factory=set)
    delivered_ids: dict[str, int] = field(default_factory=dict)
    errors: list[Any] = field(default_factory=list)
    last_delivery: float = 0.0
    newest: tuple[str, int, float] | None = None
    """(chat_id, seq, when) of the latest message.new."""

    def reset(self) -> None:
        """Forget everything seen so far (the frames of a warm-up)."""
        fresh = Tracker()
        self.sent_at, self.ack, self.delivered = fresh.sent_at, fresh.ack, fresh.delivered
        self.acked_ids, self.delivered_ids, self.errors = fresh.acked_ids, fresh.delivered_ids, fresh.errors
        self.last_delivery, self.newest = 0.0, None

    def on_frame(self, frame: dict[str, Any]) -> None:
        now = time.perf_counter()
        kind = frame.get("type")
        if kind == "message.ack":
            cmid = frame["client_msg_id"]
            if cmid in self.sent_at and cmid not in self.acked_ids:
                self.acked_ids.add(cmid)
                self.ack.append(now - self.sent_at[cmid])
        elif kind == "message.new":
            cmid = frame["message"]["client_msg_id"]
            if cmid in self.sent_at:
                self.delivered_ids[cmid] = self.delivered_ids.get(cmid, 0) + 1
                self.delivered.append(now - self.sent_at[cmid])
                self.last_delivery = now
                self.newest = (frame["message"]["chat_id"], frame["message"]["seq"], now)
        elif kind == "error":
            self.errors.append(frame)


async def read_frames(ws: ClientWebSocketResponse, tracker: Tracker) -> None:
    async for message in ws:
        if message.type == WSMsgType.TEXT:
            tracker.on_frame(orjson.loads(message.data))


async def paced_sends(
    sockets: list[tuple[ClientWebSocketResponse, str]], rate: float, count: int, tracker: Tracker
) -> float:
    """Send `count` messages round-robin over (socket, chat) pairs at `rate` per second; returns
    the seconds it took (equal to count / rate when the client keeps up)."""
    started = time.perf_counter()
    for i in range(count):
        due = started + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        ws, chat_id = sockets[i % len(sockets)]
        cmid, frame = send_frame(chat_id, f"bench message {i}")
        tracker.sent_at[cmid] = time.perf_counter()
        await ws.send_str(frame)
    return time.perf_counter() - started


async def wait_settled(tracker: Tracker, expected_deliveries: int, timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if len(tracker.acked_ids) >= len(tracker.sent_at) and len(tracker.delivered) >= expected_deliveries:
            return
        await asyncio.sleep(0.05)


@dataclass
class Pairs:
    """Users in direct chats, two by two, each with one socket."""

    users: list[BenchUser]
    senders: list[tuple[ClientWebSocketResponse, str]]
    sockets: list[ClientWebSocketResponse]
    readers: list[asyncio.Task[None]]
    chats: list[str]


async def pair_chats(client: Client, users: list[BenchUser]) -> list[str]:
    """The direct chats of `users` two by two (the same chat again for a pair that has one)."""
    return list(await asyncio.gather(*(client.chat(users[i], [users[i + 1]]) for i in range(0, len(users) - 1, 2))))


async def open_pairs(client: Client, users: list[BenchUser], tracker: Tracker, chats: list[str] | None = None) -> Pairs:
    """A socket per user (the n-th user on the client's n-th socket URL, so the two of a pair are
    on different gateways when there are two); `chats` from `pair_chats`, made now if None."""
    if chats is None:
        chats = await pair_chats(client, users)
    sockets = list(await asyncio.gather(*(client.socket(u, n) for n, u in enumerate(users))))
    readers = [asyncio.create_task(read_frames(ws, tracker)) for ws in sockets]
    senders = []
    for n, chat_id in enumerate(chats):
        senders.append((sockets[2 * n], chat_id))
        senders.append((sockets[2 * n + 1], chat_id))
    return Pairs(users, senders, sockets, readers, chats)


async def close_pairs(pairs: Pairs) -> None:
    for ws in pairs.sockets:
        await ws.close()
    await asyncio.gather(*pairs.readers, return_exceptions=True)


WARM_UP_S = 2.0
"""Sockets just opened, first frames through every path and queue: the first seconds of a run
measure the start, not the steady state the figure is about."""


async def latency(client: Client, users: list[BenchUser], rate: float, count: int) -> dict[str, Any]:
    """send → message.new at the recipient, and send → message.ack, at a steady offered rate,
    after `WARM_UP_S` at that rate whose messages are not counted."""
    tracker = Tracker()
    pairs = await open_pairs(client, users, tracker)
    try:
        warm_up = int(rate * WARM_UP_S)
        await paced_sends(pairs.senders, rate, warm_up, tracker)
        await wait_settled(tracker, warm_up, timeout=60)
        tracker.reset()
        took = await paced_sends(pairs.senders, rate, count, tracker)
        await wait_settled(tracker, count, timeout=60)
    finally:
        await close_pairs(pairs)
    return {
        "offered_rate": rate,
        "achieved_send_rate": round(count / took, 1),
        "messages": count,
        "warm_up_messages": warm_up,
        "delivered": len(tracker.delivered),
        "acked": len(tracker.acked_ids),
        "errors": len(tracker.errors),
        "send_to_recipient": summarize(tracker.delivered).as_dict(),
        "send_to_ack": summarize(tracker.ack).as_dict(),
    }


async def history_count(client: Client, user: BenchUser, chat_id: str) -> int:
    status, body = await client.call("GET", f"/api/v1/chats/{chat_id}", user.token)
    last = body.get("last_message") if status == 200 else None
    return int(last["seq"]) if last else 0


HELD_P99_MAX_MS = 1000.0
"""A rate is held only if messages keep arriving within a second (p99): at a rate the system cannot
keep up with, a backlog grows for the whole run and drains in the settle time after it, so every
message still arrives, seconds late; a longer run would not hold it."""


async def stored_messages(client: Client, users: list[BenchUser], chats: list[str]) -> int:
    """How many messages the read models hold in these chats (users chat two by two)."""
    return sum(await asyncio.gather(*(history_count(client, users[2 * n], c) for n, c in enumerate(chats))))


async def sustained(
    client: Client, users: list[BenchUser], rate: float, seconds: float, chats: list[str] | None = None
) -> dict[str, Any]:
    """Offer `rate` msgs/s for `seconds`; count what was acked, delivered once, and is in PostgreSQL.
    `chats`: the pairs' chats made beforehand (`pair_chats`), e.g. before a restart of the system."""
    tracker = Tracker()
    pairs = await open_pairs(client, users, tracker, chats)
    count = int(rate * seconds)
    lag: list[float] = []
    before = await stored_messages(client, users, pairs.chats)
    sampler = asyncio.create_task(sample_projection_lag(client, pairs, tracker, lag))
    try:
        took = await paced_sends(pairs.senders, rate, count, tracker)
        await wait_settled(tracker, count, timeout=60)
    finally:
        sampler.cancel()
        await close_pairs(pairs)
    stored = await stored_messages(client, users, pairs.chats) - before
    doubled = sum(1 for n in tracker.delivered_ids.values() if n > 1)
    latency = summarize(tracker.delivered)
    held = (
        took <= seconds * 1.05
        and len(tracker.acked_ids) == count
        and len(tracker.delivered_ids) == count
        and doubled == 0
        and stored == count
        and not tracker.errors
        and latency.p99_ms <= HELD_P99_MAX_MS
    )
    return {
        "offered_rate": rate,
        "seconds": round(took, 1),
        "messages": count,
        "acked": len(tracker.acked_ids),
        "delivered_once": len(tracker.delivered_ids),
        "doubled": doubled,
        "in_postgresql": stored,
        "errors": len(tracker.errors),
        "held": held,
        "send_to_recipient": latency.as_dict(),
        "projection_lag": summarize(lag).as_dict(),
    }


LAG_SAMPLE_INTERVAL_S = 0.05


async def sample_projection_lag(client: Client, pairs: Pairs, tracker: Tracker, lag: list[float]) -> None:
    """Every 50 ms, take the newest delivered message and poll the history of its chat, as the
    recipient, until it is there: the time from its delivery to its being readable is the
    projection lag a client sees (an upper bound: it includes one REST round trip)."""
    by_chat = {chat_id: pairs.users[2 * n] for n, chat_id in enumerate(pairs.chats)}
    while True:
        await asyncio.sleep(LAG_SAMPLE_INTERVAL_S)
        newest = tracker.newest
        if newest is None:
            continue
        chat_id, seq, delivered_at = newest
        user = by_chat.get(chat_id)
        if user is None:
            continue
        while True:
            status, body = await client.call(
                "GET", f"/api/v1/chats/{chat_id}/messages?after={seq - 1}&limit=1", user.token
            )
            if status == 200 and body["messages"]:
                lag.append(time.perf_counter() - delivered_at)
                break
            await asyncio.sleep(0.002)


FANOUT_SENDERS = 20
"""Members who send into the group in turn: one person does not type 300 messages a second (the
gateway limits a user to 40 frames/s)."""


async def fanout(
    client: Client, owner: BenchUser, members: list[BenchUser], messages: int, rate: float
) -> dict[str, Any]:
    """Messages into one group chat; every member has a socket; deliveries per second and
    latency to the last member of each message."""
    chat_id = await client.chat(owner, members, kind="group", title=f"fanout {uuid.uuid4().hex[:6]}")
    tracker = Tracker()
    sockets = list(await asyncio.gather(*(client.socket(u) for u in [owner, *members])))
    readers = [asyncio.create_task(read_frames(ws, tracker)) for ws in sockets]
    last_at: dict[str, float] = {}

    original = tracker.on_frame

    def on_frame(frame: dict[str, Any]) -> None:
        original(frame)
        if frame.get("type") == "message.new":
            last_at[frame["message"]["client_msg_id"]] = time.perf_counter()

    tracker.on_frame = on_frame  # type: ignore[method-assign]
    expected = messages * len(members)  # every member but the sender gets message.new
    try:
        started = time.perf_counter()
        senders = [(ws, chat_id) for ws in sockets[:FANOUT_SENDERS]]
        await paced_sends(senders, rate, messages, tracker)
        await wait_settled(tracker, expected, timeout=60)
        elapsed = (tracker.last_delivery or time.perf_counter()) - started
    finally:
        for ws in sockets:
            await ws.close()
        await asyncio.gather(*readers, return_exceptions=True)
    to_last = [last_at[c] - t for c, t in tracker.sent_at.items() if c in last_at]
    return {
        "members": len(members) + 1,
        "messages": messages,
        "offered_rate": rate,
        "deliveries": len(tracker.delivered),
        "expected_deliveries": expected,
        "deliveries_per_s": round(len(tracker.delivered) / elapsed, 1),
        "latency_to_last_member": summarize(to_last).as_dict(),
    }


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


PROBE_USERS = 20
"""Users whose messages are timed among the idle sockets of the connections scenario."""


async def connections(
    client: Client, users: list[BenchUser], total: int, gateway_pid: int | None, probe_messages: int
) -> dict[str, Any]:
    """`total` authenticated idle sockets spread over `users`; the gateway's RSS per socket, and
    the latency of a message among them (the first users chat in pairs while all are open)."""
    before = rss_kib(gateway_pid) if gateway_pid else None
    gate = asyncio.Semaphore(100)
    opened: list[ClientWebSocketResponse] = []

    # the probe's users open their pair sockets beside the idle ones: kept apart when there are
    # enough users, so that nobody goes over MAX_SOCKETS_PER_USER (10)
    idle_users = users[PROBE_USERS:] or users

    async def one(i: int) -> None:
        async with gate:
            opened.append(await client.socket(idle_users[i % len(idle_users)]))

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(total)))
    open_s = time.perf_counter() - started
    await asyncio.sleep(2)
    after = rss_kib(gateway_pid) if gateway_pid else None
    drains = [asyncio.create_task(drain(ws)) for ws in opened]
    tracker = Tracker()
    pairs = await open_pairs(client, users[:PROBE_USERS], tracker)
    try:
        await paced_sends(pairs.senders, 200, probe_messages, tracker)
        await wait_settled(tracker, probe_messages, timeout=30)
    finally:
        await close_pairs(pairs)
        for ws in opened:
            await ws.close()
        await asyncio.gather(*drains, return_exceptions=True)
    per_socket = round((after - before) / total, 1) if before is not None and after is not None else None
    return {
        "sockets": total,
        "users": len(users),
        "open_seconds": round(open_s, 1),
        "gateway_rss_before_kib": before,
        "gateway_rss_after_kib": after,
        "rss_per_socket_kib": per_socket,
        "send_to_recipient_among_them": summarize(tracker.delivered).as_dict(),
    }


async def drain(ws: ClientWebSocketResponse) -> None:
    """Idle sockets still get presence frames; read and drop them so none is closed as too slow."""
    async for _ in ws:
        pass
