"""One run of the fault suite: a private stack, then for each fault a phase of its own (fresh
users, chats and clients), so that every row of the table counts what that fault did.

A phase: clients connect and send; after `warm_s` the fault is injected; the load goes on until
`after_s` past the fault; then the clients stop making new messages and keep retrying the pending
ones. If, `deadline_s` after the fault, the system is not healthy (the gateway's /healthz 200, every
program RUNNING under the supervisor, every client connected and no send waiting longer than
normal), an operator would step in: the suite counts one manual action and restarts the processes
as the operator would. After a quiet moment the clients close their sockets and the checkers read
the chats' histories over REST.
"""

from __future__ import annotations

import asyncio
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from tests.chaos.checker import SLOW_ACK_S, Counters, Message, check
from tests.chaos.faults import Fault
from tests.chaos.load import Account, ChatClient, Rest, Sightings
from tests.chaos.stack import PrivateStack, StackError

HEALTH_INTERVAL_S = 0.5
READY_TIMEOUT_S = 120.0
CONNECT_TIMEOUT_S = 60.0
HISTORY_SETTLE_S = 20.0
"""How long the checkers wait for acked messages to appear in the read models before calling
them lost (an ack promises they are there already)."""
HISTORY_PAGE = 200


@dataclass(frozen=True)
class Timing:
    users: int
    rate: float
    """Messages a second, all clients together."""
    warm_s: float
    after_s: float
    deadline_s: float
    drain_s: float
    quiet_s: float = 3.0
    access_token_ttl_s: int = 900


SHORT = Timing(users=6, rate=40.0, warm_s=5.0, after_s=15.0, deadline_s=60.0, drain_s=30.0)
FULL = Timing(users=8, rate=50.0, warm_s=10.0, after_s=40.0, deadline_s=90.0, drain_s=60.0, access_token_ttl_s=120)


async def run_suite(faults: list[Fault], timing: Timing, logs_dir: Path | None = None) -> list[Counters]:
    """Every fault in order, the single-broker ones on one stack and the cluster ones on a
    3-node stack of their own."""
    results: list[Counters] = []
    for nodes, group in ((1, [f for f in faults if not f.cluster]), (3, [f for f in faults if f.cluster])):
        if not group:
            continue
        keep = logs_dir / f"kafka{nodes}" if logs_dir else None
        with PrivateStack.started(
            kafka_nodes=nodes, access_token_ttl_s=timing.access_token_ttl_s, keep_logs=keep
        ) as stack:
            async with aiohttp.ClientSession() as http:
                for fault in group:
                    results.append(await run_guarded(stack, http, fault, timing))
    return results


async def run_guarded(stack: PrivateStack, http: aiohttp.ClientSession, fault: Fault, timing: Timing) -> Counters:
    """A phase that raised is a row that says so (and fails the suite), and the next fault runs."""
    try:
        return await run_phase(stack, http, fault, timing)
    except Exception as error:
        stack.note(f"{fault.name}: the phase failed: {error!r}")
        counters = Counters(fault.name, crashed=True)
        counters.notes.append("the phase failed: " + "".join(traceback.format_exception_only(error)).strip()[:500])
        return counters


async def run_phase(stack: PrivateStack, http: aiohttp.ClientSession, fault: Fault, timing: Timing) -> Counters:
    counters = Counters(fault.name)
    stack.note(f"--- {fault.name}")
    await ensure_ready(stack, counters)
    accounts, chats = await make_users_and_chats(http, stack.base_url, timing.users)
    sightings = Sightings()
    rate = timing.rate / timing.users
    clients = [ChatClient(http, stack.base_url, a, chats[a.username], rate, sightings) for a in accounts]
    health: list[tuple[float, int]] = []
    sampler = asyncio.create_task(sample_health(http, stack.base_url, health))
    try:
        for client in clients:
            client.start()
        await wait_for(lambda: all_connected(clients), CONNECT_TIMEOUT_S)
        await asyncio.sleep(timing.warm_s)
        fault_at = time.time()
        await asyncio.to_thread(fault.inject, stack)
        await asyncio.sleep(max(0.0, fault_at + timing.after_s - time.time()))
        for client in clients:
            client.stop_generating()
        await heal_or_act(stack, clients, health, counters, fault_at + timing.deadline_s)
        await wait_for(lambda: drained(clients), timing.drain_s)
        await asyncio.sleep(timing.quiet_s)
    finally:
        await asyncio.gather(*(c.finish() for c in clients), return_exceptions=True)
        sampler.cancel()
    histories = await read_histories(http, stack.base_url, accounts, chats, clients)
    check(counters, clients, histories, sightings, fault_at, health)
    stack.note(f"{fault.name}: {counters.violations} recovery {counters.recovery_s} errors {dict(counters.errors)}")
    return counters


# --- waiting -----------------------------------------------------------------------------------
async def wait_for(predicate: Callable[[], bool | Awaitable[bool]], timeout: float, interval: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(interval)


def all_connected(clients: list[ChatClient]) -> bool:
    return all(c.connected.is_set() for c in clients)


def drained(clients: list[ChatClient]) -> bool:
    return all(not c.pending for c in clients)


async def sample_health(http: aiohttp.ClientSession, base_url: str, samples: list[tuple[float, int]]) -> None:
    while True:
        samples.append((time.time(), await healthz(http, base_url)))
        await asyncio.sleep(HEALTH_INTERVAL_S)


async def healthz(http: aiohttp.ClientSession, base_url: str) -> int:
    try:
        async with http.get(f"{base_url}/healthz", timeout=aiohttp.ClientTimeout(total=3)) as response:
            return response.status
    except (aiohttp.ClientError, OSError, TimeoutError):
        return 0


async def unhealthy_because(
    stack: PrivateStack, clients: list[ChatClient], health: list[tuple[float, int]]
) -> list[str]:
    """Why the system does not look healthy right now (empty: it does)."""
    why = []
    if not health or health[-1][1] != 200:
        why.append(f"/healthz {health[-1][1] if health else 'unsampled'}")
    if not await asyncio.to_thread(stack.all_running):
        why.append(
            "not every program RUNNING: " + (await asyncio.to_thread(stack.system_status)).strip().replace("\n", "; ")
        )
    now = time.time()
    if not all_connected(clients):
        why.append(f"{sum(not c.connected.is_set() for c in clients)} clients without a socket")
    slow = sum(1 for c in clients for s in c.pending.values() if now - s.created > SLOW_ACK_S)
    if slow:
        why.append(f"{slow} sends waiting longer than {SLOW_ACK_S:.0f} s")
    return why


async def heal_or_act(
    stack: PrivateStack, clients: list[ChatClient], health: list[tuple[float, int]], counters: Counters, deadline: float
) -> None:
    """Wait until the system is healthy, until `deadline` (wall clock); past it, one manual action."""
    why: list[str] = []
    while time.time() < deadline:
        why = await unhealthy_because(stack, clients, health)
        if not why:
            return
        await asyncio.sleep(1.0)
    why = await unhealthy_because(stack, clients, health)
    if not why:
        return
    counters.manual_actions += 1
    counters.notes.append("not healed by the deadline: " + "; ".join(why))
    await operator_restart(stack, counters)


async def ensure_ready(stack: PrivateStack, counters: Counters) -> None:
    """Before a phase: the system answers and every program runs, or an operator makes it so."""

    def ready() -> bool:
        return stack.healthz() == 200 and stack.all_running()

    if await wait_for(lambda: asyncio.to_thread(ready), READY_TIMEOUT_S, interval=1.0):
        return
    counters.manual_actions += 1
    counters.notes.append(f"not ready before the fault: healthz {stack.healthz()}, {stack.system_status().strip()}")
    await operator_restart(stack, counters)


async def operator_restart(stack: PrivateStack, counters: Counters) -> None:
    try:
        await asyncio.to_thread(stack.operator_restart)
    except StackError as error:
        counters.notes.append(f"the operator's restart failed: {str(error)[:300]}")


# --- users, chats, histories ------------------------------------------------------------------
async def make_users_and_chats(
    http: aiohttp.ClientSession, base_url: str, count: int
) -> tuple[list[Account], dict[str, list[str]]]:
    """`count` fresh users; each in a direct chat with the next one (a ring) and all in one group.
    Returns the accounts (logged in) and each username's chats."""
    tag = uuid.uuid4().hex[:6]
    accounts = [Account(f"chaos{tag}u{i}") for i in range(count)]
    rests = [Rest(http, base_url, a, Counter()) for a in accounts]
    for rest in rests:
        await rest.register()
        await rest.login()
    chats: dict[str, list[str]] = {a.username: [] for a in accounts}
    for i, account in enumerate(accounts):
        other = accounts[(i + 1) % count]
        _, answer = await rests[i].call(
            "POST", "/api/v1/chats", {"type": "direct", "member_ids": [other.user_id]}, ok=(200, 201)
        )
        for member in (account, other):
            chats[member.username].append(str(answer["chat"]["id"]))
    body = {"type": "group", "title": f"chaos {tag}", "member_ids": [a.user_id for a in accounts[1:]]}
    _, answer = await rests[0].call("POST", "/api/v1/chats", body, ok=(201,))
    for account in accounts:
        chats[account.username].append(str(answer["chat"]["id"]))
    return accounts, chats


async def read_histories(
    http: aiohttp.ClientSession,
    base_url: str,
    accounts: list[Account],
    chats: dict[str, list[str]],
    clients: list[ChatClient],
) -> dict[str, list[Message]]:
    """Every chat's whole history, read again until every acked message is in it or
    `HISTORY_SETTLE_S` has passed."""
    reader_of = {
        chat: next(a for a in accounts if chat in chats[a.username])
        for chat in {c for cs in chats.values() for c in cs}
    }
    expected = {(s.ack.chat_id, s.ack.seq) for c in clients for s in c.sends if s.ack}
    deadline = time.monotonic() + HISTORY_SETTLE_S
    while True:
        histories = {chat: await read_history(http, base_url, account, chat) for chat, account in reader_of.items()}
        held = {(chat, int(m["seq"])) for chat, history in histories.items() for m in history}
        if expected <= held or time.monotonic() >= deadline:
            return histories
        await asyncio.sleep(1.0)


async def read_history(http: aiohttp.ClientSession, base_url: str, account: Account, chat: str) -> list[Message]:
    rest = Rest(http, base_url, account, Counter())
    messages: list[Message] = []
    after = 0
    while True:
        _, answer = await rest.call("GET", f"/api/v1/chats/{chat}/messages?after={after}&limit={HISTORY_PAGE}")
        page = answer["messages"]
        messages.extend(page)
        if len(page) < HISTORY_PAGE:
            return messages
        after = int(page[-1]["seq"])
