"""The restarted system stage (`--restart-system`): the first minute after every process restarts.

The system under test must be the one `scripts/system` runs (as `make run` starts it). The stage

1. **fills** its log until `message.events` holds at least `target` records (default 100,000);
2. makes the users and the direct chats of the measured run (before the restart: a restarted
   system is measured on what it must recover, not on registrations);
3. `scripts/system down` (every process of the system; the services stay up), then
   `scripts/system up` with the bench's environment (and `BENCH_LIMITS`), timing from the start of
   `up` to the gateway's first `/healthz` 200;
4. at once, `scenarios.sustained` at `rate` (1,000 msg/s) for `seconds` (60), new sockets on the
   restarted gateway: p50/p99, held or not, and the log's size.

**Why the fill produces `message.send` commands straight to Kafka** (as `bench/restart.py` does)
instead of sending through the gateway: the stage measures what a restart costs, and that is set
by the history the workers recover (the streams worker's tables and changelogs, the projections'
offsets), not by how the history got there. Commands produced to `message.send` for real chats of
real users are decided by the running streams worker and projected by the projections worker
exactly as the gateway's would be, giving the same events, changelogs and rows; the gateway keeps
nothing of a message across a restart. They go in at the worker's decision rate (several times
the 1,000 msg/s the gateway path holds on this machine), so 100,000 messages take well under the
100 s+ they would take through WebSockets. The fill then waits until the read model holds them
all: the restart starts from a caught-up system, as the issue's measurement did.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from bench import scenarios
from bench.client import BenchUser, Client, healthy
from bench.log_size import messages_in_log
from bench.rebuild import produce_log
from bench.restart import sends
from config.settings import CommonSettings

FILL_CHATS = 40
"""Groups of the fill, all created by one user (under the per-user write burst of 80)."""
FILL_DECIDED_PER_S_FLOOR = 200.0
"""The fill's deadline assumes at least this decision rate (plus a minute)."""
HEALTHY_TIMEOUT_S = 300.0
UP_TIMEOUT_S = 600.0


def system_command(root: Path, env: dict[str, str], action: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(root / "scripts/system"), action],
        cwd=root,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def supervised(root: Path) -> bool:
    """Whether `scripts/system` (supervisord) runs the system: the stage restarts it that way."""
    done = subprocess.run([str(root / "scripts/system"), "status"], cwd=root, capture_output=True, check=False)
    return done.returncode == 0


async def fill_log(client: Client, settings: CommonSettings, target: int, tag: str) -> dict[str, Any]:
    """Until `message.events` holds at least `target` records: sends produced to `message.send`
    over `FILL_CHATS` groups of two new users, then waited for in the log and the read model."""
    held = await messages_in_log(settings)
    missing = target - held
    if missing <= 0:
        return {"log_before": held, "produced": 0}
    owner, member = await client.users(f"f{tag}_", 2)
    chat_count = max(1, min(FILL_CHATS, missing // 10))
    chats = [await client.chat(owner, [member], kind="group", title=f"fill {n}") for n in range(chat_count)]
    started = time.monotonic()
    print(f"filling the log: {missing:,} sends to reach {target:,} message events", flush=True)
    await produce_log(settings, sends([uuid.UUID(c) for c in chats], uuid.UUID(owner.id), missing), lambda: None)
    deadline = started + 60 + missing / FILL_DECIDED_PER_S_FLOOR
    with tqdm(total=missing, desc="decided", unit=" sends", unit_scale=True) as bar:
        await wait_until(lambda: messages_in_log(settings), target, deadline, bar, held)
    with tqdm(total=missing, desc="in PostgreSQL", unit=" sends", unit_scale=True) as bar:
        await wait_until(lambda: stored(client, owner, chats), missing, deadline, bar, 0)
    seconds = time.monotonic() - started
    return {"log_before": held, "produced": missing, "seconds": round(seconds, 1), "per_s": round(missing / seconds)}


async def stored(client: Client, owner: BenchUser, chats: list[str]) -> int:
    return sum(await asyncio.gather(*(scenarios.history_count(client, owner, c) for c in chats)))


async def wait_until(
    count: Callable[[], Awaitable[int]], goal: int, deadline: float, bar: tqdm[Any], start: int
) -> None:
    shown = start
    while True:
        now = await count()
        bar.update(max(0, now - shown))
        shown = max(shown, now)
        if now >= goal:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the fill reached {now:,} of {goal:,} before its deadline")
        await asyncio.sleep(1)


async def restart(root: Path, base_url: str, env: dict[str, str]) -> tuple[float, subprocess.Popen[str]]:
    """`down`, then `up` started: the seconds from `up`'s start to the gateway's first /healthz 200,
    and `up` itself, still waiting for supervisord to count every program started."""
    down = system_command(root, env, "down")
    output, _ = await asyncio.to_thread(down.communicate)
    if down.returncode != 0:
        raise RuntimeError(f"scripts/system down failed ({down.returncode}):\n{output}")
    started = time.monotonic()
    up = system_command(root, env, "up")
    while not await asyncio.to_thread(healthy, base_url):
        if up.poll() is not None and up.returncode != 0:
            raise RuntimeError(f"scripts/system up failed ({up.returncode}):\n{up.communicate()[0]}")
        if time.monotonic() - started > HEALTHY_TIMEOUT_S:
            up.kill()
            raise TimeoutError(f"{base_url}/healthz not 200 within {HEALTHY_TIMEOUT_S:.0f} s of `up`")
        await asyncio.sleep(0.1)
    return time.monotonic() - started, up


async def measure_restarted_system(
    root: Path,
    base_url: str,
    settings: CommonSettings,
    env: dict[str, str],
    measure: Callable[[Awaitable[dict[str, Any]]], Awaitable[dict[str, Any]]],
    target: int,
    users: int,
    rate: float,
    seconds: float,
) -> dict[str, Any]:
    """The whole stage; `measure` wraps the measured run (the bench's CPU meter over the new pids)."""
    if not supervised(root):
        raise RuntimeError("the restarted system stage restarts the system with scripts/system: start it so")
    tag = uuid.uuid4().hex[:6]
    client = Client(base_url)
    try:
        fill = await fill_log(client, settings, target, tag)
        pair_users = await client.users(f"r{tag}_", users - users % 2)
        chats = await scenarios.pair_chats(client, pair_users)
    finally:
        await client.close()
    print("restarting every process of the system (scripts/system down, up)", flush=True)
    to_healthy, up = await restart(root, base_url, env)
    held = await messages_in_log(settings)
    client = Client(base_url)  # the old keep-alive connections went with the old gateway
    try:
        result = await measure(scenarios.sustained(client, pair_users, rate, seconds, chats))
    finally:
        await client.close()
        output, _ = await asyncio.to_thread(up.communicate, timeout=UP_TIMEOUT_S)
    if up.returncode != 0:
        raise RuntimeError(f"scripts/system up failed ({up.returncode}) after /healthz answered:\n{output}")
    return {**result, "fill": fill, "up_to_healthy_s": round(to_healthy, 2), "log_messages": held}
