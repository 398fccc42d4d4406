"""The scale-out stage (`--scale-out`): does throughput per CPU second hold with two of each?

The same sustained run (`scenarios.sustained`, one rate, 1,000 msg/s by default) twice:

1. on the system as it runs (one streams worker, one gateway);
2. with a second streams worker (the same app id, so the same consumer group, with its own web
   port and a data dir of its own beside the system's, `<WORKER_DATA_DIR>-scale-out`, kept from one
   bench run to the next as a deployed worker keeps its state: its recovery reads only the
   changelogs' tail, not the whole history) and a second gateway (its own port, 8090 by default,
   and instance id), both started by the bench as child processes with the bench's environment and
   `BENCH_LIMITS` (the environment `make bench` gives the system it starts), half of the bench's
   users on each gateway: the n-th user on the (n mod 2)-th, so every direct message crosses from
   one gateway to the other through Redis.

Before the second run the streams group has rebalanced (both workers hold partitions, the same
number in all as the first one held alone, neither is rebalancing nor recovering: both /healthz
answer 200), the new worker has recovered its partitions (Faust's `[^Worker]: Ready`), and the
gateways' group of `message.delivered` has settled (every partition consumed, by both); each of
these must hold for `STABLE_S` on end (a rebalance that follows the first one, or a recovery that
starts a moment after it, restarts the clock). Each run follows a few seconds at the rate that are
not counted, so the new worker's first batches are not in the figure.

The figure: messages delivered once per CPU second of every process (the system's, the extra two,
Kafka, PostgreSQL, Redis and the bench client: `bench.cpu`), for both runs, and their ratio; the
issue asks that it not fall by more than 15 %. The extra processes are stopped at the end, on an
error or on Ctrl-C too, and the streams worker is waited for until it holds every partition again.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench import scenarios
from bench.client import BenchUser, Client
from bench.cpu import CpuMeter, system_pids
from bench.log_size import messages_in_log
from config.settings import CommonSettings, GatewaySettings, WorkerSettings
from runtime.topic_log import partitions_of
from schemas import topics
from tests.processes import Process, free_port, port_is_free, start, wait_http

ALLOWED_DROP = 0.15
"""Messages per CPU second with two of each may be at most this much below one of each."""
WARM_UP_S = 3.0
SETTLE_TIMEOUT_S = 600.0
"""A first run recovers the second worker's half of the tables from nothing: minutes on a large log."""
STABLE_S = 5.0
ROOT = Path(__file__).resolve().parent.parent
READY_LINE = "[^Worker]: Ready"
"""What Faust logs once a worker's first assignment is recovered."""


@dataclass
class Extra:
    """The second streams worker and the second gateway."""

    streams: Process
    streams_url: str
    gateway: Process
    gateway_url: str

    @property
    def pids(self) -> dict[int, str]:
        return {self.streams.popen.pid: "streams 2", self.gateway.popen.pid: "gateway 2"}


def get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=3) as response:
        found: dict[str, Any] = orjson.loads(response.read())
        return found


def metric(url: str, name: str) -> float:
    """The sum of every sample of the Prometheus metric `name` at `url` (a /metrics page)."""
    with urllib.request.urlopen(url, timeout=3) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and line[len(name) : len(name) + 1] in (" ", "{")
    )


def streams_url() -> str:
    """The running streams worker's web views (the port `scripts/system` gives it)."""
    return f"http://127.0.0.1:{os.environ.get('STREAMS_WEB_PORT', '6066')}"


def gateway_instance_id(port: int) -> str:
    """Another instance id than the running gateway's (reply topics and origins are per instance),
    the same on every bench run (no new reply topic each time)."""
    return f"{GatewaySettings().gateway_instance_id or socket.gethostname()}-{port}"


@contextmanager
def extra_processes(env: dict[str, str], gateway_port: int, log_dir: Path) -> Iterator[Extra]:
    """The second streams worker and gateway, running (answering /healthz), stopped on exit."""
    if not port_is_free(gateway_port):
        raise RuntimeError(f"port {gateway_port} for the second gateway is taken (--scale-out-gateway-port)")
    for name in ("streams-2", "gateway-2"):  # `start` appends: a log of an earlier run would say Ready
        (log_dir / f"{name}.log").unlink(missing_ok=True)
    data_dir = second_worker_data_dir(env)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    streams_port = free_port()
    started: list[Process] = []
    try:
        streams_env = {**env, "WORKER_DATA_DIR": str(data_dir), "WORKER_WEB_PORT": str(streams_port)}
        args = ["streams", "worker", "-l", "info", "--web-port", str(streams_port)]
        started.append(start("streams-2", args, streams_env, log_dir))
        instance = gateway_instance_id(gateway_port)
        gateway_env = {**env, "GATEWAY_PORT": str(gateway_port), "GATEWAY_INSTANCE_ID": instance}
        started.append(start("gateway-2", ["gateway"], gateway_env, log_dir))
        extra = Extra(started[0], f"http://127.0.0.1:{streams_port}", started[1], f"http://127.0.0.1:{gateway_port}")
        wait_http(extra.streams, f"{extra.streams_url}/healthz", timeout=SETTLE_TIMEOUT_S)
        wait_http(extra.gateway, f"{extra.gateway_url}/healthz", timeout=120)
        yield extra
    finally:
        for process in started:
            process.stop(timeout=30)


def second_worker_data_dir(env: dict[str, str]) -> Path:
    """Beside the system's worker's data dir (`WORKER_DATA_DIR`, relative to the project), kept."""
    first = Path(env.get("WORKER_DATA_DIR") or os.environ.get("WORKER_DATA_DIR") or WorkerSettings().worker_data_dir)
    first = first if first.is_absolute() else ROOT / first
    return first.with_name(f"{first.name}-scale-out")


async def settle(what: str, done: Callable[[], bool], stable_s: float = STABLE_S) -> float:
    """Seconds until `done()` holds, and has held for `stable_s` on end (an error on a view that
    does not answer yet, or answers 503, counts as not)."""
    started = time.monotonic()
    holding_since: float | None = None
    while time.monotonic() - started < SETTLE_TIMEOUT_S:
        try:
            holds = await asyncio.to_thread(done)
        except OSError:
            holds = False
        now = time.monotonic()
        holding_since = (holding_since or now) if holds else None
        if holding_since is not None and now - holding_since >= stable_s:
            return holding_since - started
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{what} did not settle within {SETTLE_TIMEOUT_S:.0f} s")


def streams_split(urls: list[str], total: int) -> bool:
    """Every worker at `urls` holds partitions, `total` in all, and none is rebalancing."""
    views = [get_json(f"{url}/healthz") for url in urls]
    counts = [int(v["assigned_partitions"]) for v in views]
    return all(c > 0 for c in counts) and sum(counts) == total and not any(v["rebalancing"] for v in views)


def deliveries_split(urls: list[str], total: int) -> bool:
    """Every gateway at `urls` consumes partitions of `message.delivered`, `total` in all."""
    counts = [metric(f"{url}/metrics", "gateway_ws_delivery_partitions") for url in urls]
    return all(c > 0 for c in counts) and sum(counts) == total


async def wait_ready(extra: Extra) -> float:
    return await settle("the second streams worker's recovery", lambda: READY_LINE in extra.streams.log())


async def settle_two_of_each(extra: Extra, base_url: str, stream_partitions: int, delivered: int) -> dict[str, float]:
    """Seconds until the streams group has split `stream_partitions` over both workers, the new
    worker has recovered, and both gateways consume the `delivered` partitions of message.delivered."""
    workers = [streams_url(), extra.streams_url]
    streams = await settle("the streams group", lambda: streams_split(workers, stream_partitions))
    ready = await wait_ready(extra)
    gateways = [base_url, extra.gateway_url]
    deliveries = await settle("the gateways' delivery group", lambda: deliveries_split(gateways, delivered))
    await settle(
        "two of each",
        lambda: streams_split(workers, stream_partitions) and deliveries_split(gateways, delivered),
    )
    return {
        "streams_rebalance_s": round(streams, 1),
        "streams_ready_s": round(ready, 1),
        "deliveries_rebalance_s": round(deliveries, 1),
    }


async def run_once(
    base_url: str, socket_urls: list[str], users: list[BenchUser], rate: float, seconds: float, extra: dict[int, str]
) -> dict[str, Any]:
    """A warm-up (not counted), then the measured run under a CPU meter of every process."""
    client = Client(base_url, socket_urls)
    try:
        chats = await scenarios.pair_chats(client, users)
        await scenarios.sustained(client, users, rate, WARM_UP_S, chats)
        meter = CpuMeter(system_pids(ROOT) | extra)
        meter.start()
        result = await scenarios.sustained(client, users, rate, seconds, chats)
        meter.stop()
        result.update(meter.figures())
    finally:
        await client.close()
    result["cpu_seconds"] = round(meter.total_seconds, 2)
    result["messages_per_cpu_s"] = round(result["delivered_once"] / meter.total_seconds, 1)
    return result


async def measure_scale_out(
    base_url: str,
    settings: CommonSettings,
    env: dict[str, str],
    users: list[BenchUser],
    rate: float,
    seconds: float,
    gateway_port: int,
    log_dir: Path,
    counted: Callable[[Awaitable[dict[str, Any]]], Awaitable[dict[str, Any]]],
) -> dict[str, Any]:
    """The stage; `counted` adds the log's size to a run (`bench.log_size.counted`)."""
    stream_partitions = int(get_json(f"{streams_url()}/healthz")["assigned_partitions"])
    delivered = len(await partitions_of(settings, settings.topic(topics.MESSAGE_DELIVERED.name)))
    print(f"scale-out: one streams worker, one gateway, {rate:.0f} msg/s", flush=True)
    single = await counted(run_once(base_url, [base_url], users, rate, seconds, {}))
    print("scale-out: starting a second streams worker and a second gateway", flush=True)
    with extra_processes(env, gateway_port, log_dir) as extra:
        settled = await settle_two_of_each(extra, base_url, stream_partitions, delivered)
        print(f"scale-out: two of each, {rate:.0f} msg/s (settled: {settled})", flush=True)
        double = await counted(run_once(base_url, [base_url, extra.gateway_url], users, rate, seconds, extra.pids))
        double["extra_pids"] = {name: pid for pid, name in extra.pids.items()}
    print("scale-out: second processes stopped; waiting for the first worker to hold every partition", flush=True)
    back = await settle("the streams group, back to one", lambda: streams_split([streams_url()], stream_partitions))
    await settle("the delivery group, back to one", lambda: deliveries_split([base_url], delivered))
    ratio = double["messages_per_cpu_s"] / single["messages_per_cpu_s"] if single["messages_per_cpu_s"] else 0.0
    return {
        "rate": rate,
        "single": single,
        "double": {**double, **settled},
        "back_to_one_s": round(back, 1),
        "per_cpu_ratio": round(ratio, 3),
        "per_cpu_held": ratio >= 1 - ALLOWED_DROP,
        "log_messages": single["log_messages"],
        "log_messages_now": await messages_in_log(settings),
    }
