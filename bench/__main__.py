"""`python -m bench` (or `make bench`): measure the running system beside this machine's floors.

Uses the system at --base-url; when nothing answers there, starts it the way `make run` does.
Prints a table and writes it as JSON (bench/results/latest.json by default). `--smoke` runs every
scenario with tiny numbers in a few seconds, so that the benchmark cannot rot (a test runs it).
Every stage records how many message events the log held when it started (`bench.log_size`).
Opt-in stages: `--scale-out` (a second streams worker and gateway, `bench.scale_out`) and
`--restart-system` (every process restarted on a log of 100,000+ messages, `bench.restarted_system`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from bench import profile, scenarios
from bench.client import Client, healthy
from bench.cpu import CpuMeter, system_pid, system_pids
from bench.floors import measure_floors
from bench.log_size import counted
from bench.rebuild import measure_rebuild
from bench.report import render
from bench.restart import measure_restart
from bench.restarted_system import measure_restarted_system
from bench.scale_out import measure_scale_out
from config.kafka import client_options
from config.settings import CommonSettings, GatewaySettings

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Sizes:
    users: int
    latency_messages: int
    latency_rate: float
    throughput_rates: tuple[float, ...]
    throughput_seconds: float
    fanout_members: int
    fanout_messages: int
    fanout_rate: float
    connections: int
    connection_users: int
    floor_samples: int
    rebuild_events: int
    restart_system_messages: int
    """The restarted system stage fills the log up to this many message events first."""
    restart_system_rate: float
    restart_system_seconds: float
    scale_out_rate: float
    scale_out_seconds: float


FULL = Sizes(
    200,
    5000,
    1000,
    (1000, 2000, 3000, 5000),
    60,
    99,
    500,
    300,
    10_000,
    1000 + scenarios.PROBE_USERS,
    2000,
    1_000_000,
    100_000,
    1000,
    60,
    1000,
    60,
)
SMOKE = Sizes(4, 20, 50, (50,), 1, 3, 5, 50, 20, 4, 20, 2000, 300, 50, 2, 50, 2)


BENCH_LIMITS = {"REGISTER_LIMIT_PER_ADDRESS": "100000"}
"""One client registers a thousand users from one address: what the system refuses by default."""


def ensure_running(base_url: str) -> None:
    if not healthy(base_url):
        print("no system answers at", base_url, "- starting it with `make run`", flush=True)
        subprocess.run(["make", "run"], cwd=ROOT, check=True, env={**os.environ, **BENCH_LIMITS})


def gateway_pid(given: int | None) -> int | None:
    """The gateway process whose RSS is measured: --gateway-pid, else the one `make run` started."""
    if given:
        return given
    return system_pid(ROOT, "gateway")


PROFILE_AFTER_S = 5.0
PROFILE_SECONDS = 20.0


async def measured(stage: Awaitable[dict[str, Any]], profiled: dict[str, int] | None = None) -> dict[str, Any]:
    """Run `stage`, adding the CPU each part of the system used meanwhile (percent of one core),
    its wake-ups a second, and, for `profiled` processes, py-spy profiles taken a few seconds into the stage."""
    meter = CpuMeter(system_pids(ROOT))
    meter.start()
    recording = asyncio.create_task(start_profiles(profiled)) if profiled else None
    result = await stage
    meter.stop()
    result.update(meter.figures())
    if recording is not None:
        result["profile"] = await asyncio.to_thread(profile.finish, await recording)
    return result


async def start_profiles(pids: dict[str, int]) -> list[profile.Recording]:
    await asyncio.sleep(PROFILE_AFTER_S)
    return profile.start(pids, PROFILE_SECONDS, ROOT / "bench/results")


def profiled_processes(enabled: bool) -> dict[str, int] | None:
    if not enabled:
        return None
    return {name: pid for pid, name in system_pids(ROOT).items() if name != "bench client"}


def save(results: dict[str, Any], path: Path) -> None:
    """Written after every stage, so that a long run that is stopped still leaves what it measured."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2))


def log_settings(args: argparse.Namespace) -> CommonSettings:
    """The settings to read the system's log with (`--kafka` overrides the brokers)."""
    settings = CommonSettings()
    return settings.model_copy(update={"kafka_brokers": args.kafka}) if args.kafka else settings


async def run(args: argparse.Namespace, sizes: Sizes) -> dict[str, Any]:
    results: dict[str, Any] = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "smoke": args.smoke}
    print("measuring the floors", flush=True)
    settings = CommonSettings()
    kafka = client_options(settings) | ({"bootstrap_servers": args.kafka.split(",")} if args.kafka else {})
    results["floors"] = {
        k: v.as_dict()
        for k, v in (
            await measure_floors(kafka, args.database_url or settings.database_url, sizes.floor_samples)
        ).items()
    }
    log = log_settings(args)
    client = Client(args.base_url)
    tag = uuid.uuid4().hex[:6]
    try:
        users = await client.users(f"b{tag}_", max(sizes.users, sizes.fanout_members + 1, sizes.connection_users))
        pair_users = users[: sizes.users - sizes.users % 2]
        save(results, args.json)
        print("latency", flush=True)
        results["latency"] = await counted(
            log, measured(scenarios.latency(client, pair_users, sizes.latency_rate, sizes.latency_messages))
        )
        save(results, args.json)
        print("throughput", flush=True)
        results["throughput"] = []
        for n, rate in enumerate(sizes.throughput_rates):
            profiled = profiled_processes(args.profile and n == 0)
            results["throughput"].append(
                await counted(
                    log,
                    measured(scenarios.sustained(client, pair_users, rate, sizes.throughput_seconds), profiled),
                )
            )
            save(results, args.json)
            if not results["throughput"][-1]["held"]:
                break
        save(results, args.json)
        print("fan-out", flush=True)
        results["fanout"] = await counted(
            log,
            measured(
                scenarios.fanout(
                    client, users[0], users[1 : sizes.fanout_members + 1], sizes.fanout_messages, sizes.fanout_rate
                )
            ),
        )
        save(results, args.json)
        print("connections", flush=True)
        results["connections"] = await counted(
            log,
            scenarios.connections(
                client,
                users[: sizes.connection_users],
                sizes.connections,
                gateway_pid(args.gateway_pid),
                probe_messages=200 if not args.smoke else 10,
            ),
        )
    finally:
        await client.close()
    save(results, args.json)
    if args.scale_out:
        results["scale_out"] = await scale_out_stage(args, sizes)
        save(results, args.json)
    if args.restart_system:
        results["restarted_system"] = await restarted_system_stage(args, sizes)
        save(results, args.json)
    if not args.no_rebuild:
        results["rebuild"] = await rebuild_stage(args, sizes)
    return results


MAX_RATE_PER_USER = 10.0
"""Messages a second one bench user sends at most: well under the gateway's write budget (40/s)."""


def senders_for(rate: float, at_least: int) -> int:
    """Users (an even number, in pairs) enough to offer `rate` within `MAX_RATE_PER_USER` each."""
    return max(at_least - at_least % 2, 2 * math.ceil(rate / MAX_RATE_PER_USER / 2))


async def scale_out_stage(args: argparse.Namespace, sizes: Sizes) -> dict[str, Any]:
    rate = args.scale_out_rate or sizes.scale_out_rate
    log = log_settings(args)
    client = Client(args.base_url)
    try:
        users = await client.users(f"s{uuid.uuid4().hex[:6]}_", senders_for(rate, sizes.users))
    finally:
        await client.close()
    return await measure_scale_out(
        args.base_url,
        log,
        BENCH_LIMITS,
        users,
        rate,
        args.scale_out_seconds or sizes.scale_out_seconds,
        args.scale_out_gateway_port,
        args.json.parent / "scale-out-logs",
        lambda stage: counted(log, stage),
    )


async def restarted_system_stage(args: argparse.Namespace, sizes: Sizes) -> dict[str, Any]:
    target = args.restart_system_messages or sizes.restart_system_messages
    rate = args.restart_system_rate or sizes.restart_system_rate
    print(f"restarted system: a log of at least {target:,} messages, then every process restarted", flush=True)
    return await measure_restarted_system(
        ROOT,
        args.base_url,
        log_settings(args),
        BENCH_LIMITS,
        measured,
        target,
        senders_for(rate, sizes.users),
        rate,
        args.restart_system_seconds or sizes.restart_system_seconds,
    )


async def restarted_system_only(args: argparse.Namespace, sizes: Sizes) -> dict[str, Any]:
    results: dict[str, Any] = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "smoke": args.smoke}
    results["restarted_system"] = await restarted_system_stage(args, sizes)
    return results


async def scale_out_only(args: argparse.Namespace, sizes: Sizes) -> dict[str, Any]:
    results: dict[str, Any] = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "smoke": args.smoke}
    results["scale_out"] = await scale_out_stage(args, sizes)
    return results


async def rebuild_stage(args: argparse.Namespace, sizes: Sizes) -> dict[str, Any]:
    events = args.rebuild_events or sizes.rebuild_events
    print(f"rebuild of a log of {events:,} message events (its own topics and database)", flush=True)
    settings = CommonSettings()
    admin_url = args.admin_database_url or env_setting("TEST_ADMIN_DATABASE_URL") or settings.database_url
    return await measure_rebuild(ROOT, settings, admin_url, events, command=not args.no_rebuild_command)


def env_setting(name: str) -> str:
    """From the environment, else from the project's `.env`."""
    return os.environ.get(name) or dotenv_values(ROOT / ".env").get(name) or ""


async def rebuild_only(args: argparse.Namespace, sizes: Sizes) -> dict[str, Any]:
    results: dict[str, Any] = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "smoke": args.smoke}
    results["rebuild"] = await rebuild_stage(args, sizes)
    return results


def interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    # SIGTERM as Ctrl-C: the stages' cleanups run (the scale-out stage's processes, private topics)
    signal.signal(signal.SIGTERM, interrupt)
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--base-url", default="http://127.0.0.1:8080")
    parser.add_argument(
        "--kafka", help="the bootstrap list (default: KAFKA_BROKERS; the login: KAFKA_USERNAME/KAFKA_PASSWORD)"
    )
    parser.add_argument("--database-url", help="default: DATABASE_URL, from the environment or .env")
    parser.add_argument("--smoke", action="store_true", help="tiny numbers: checks that every scenario runs")
    parser.add_argument("--no-rebuild", action="store_true", help="skip the rebuild stage")
    parser.add_argument(
        "--rebuild-only",
        action="store_true",
        help="only the rebuild stage (no system needed: it makes its own topics and database)",
    )
    parser.add_argument(
        "--rebuild-events", type=int, help="message events in the rebuild's log (default 1,000,000; --smoke 2,000)"
    )
    parser.add_argument(
        "--no-rebuild-command",
        action="store_true",
        help="measure the bulk loader alone, not `python -m projections rebuild` after it",
    )
    parser.add_argument(
        "--admin-database-url",
        help="a role that may CREATE DATABASE, for the rebuild's own database (default: TEST_ADMIN_DATABASE_URL, "
        "else DATABASE_URL)",
    )
    parser.add_argument(
        "--no-profile",
        dest="profile",
        action="store_false",
        help="no py-spy profiles during the first throughput rate (never taken with --smoke)",
    )
    parser.add_argument(
        "--restart-only",
        action="store_true",
        help="only the restart stage: a streams worker of its own fills its log, then restarts (bench/restart.py)",
    )
    parser.add_argument(
        "--restart-messages", type=int, help="sends in the restart stage's log (default 200,000; --smoke 2,000)"
    )
    parser.add_argument(
        "--restart-from-nothing", action="store_true", help="the restart stage also restarts on an empty data dir"
    )
    parser.add_argument(
        "--restart-store", choices=("rocksdb", "memory"), default="rocksdb", help="the restart stage's TABLE_STORE"
    )
    parser.add_argument(
        "--restart-system",
        action="store_true",
        help="also the restarted system stage: a log of 100,000+ messages, every process of the system restarted "
        "(scripts/system down, up), then 60 s at 1,000 msg/s at once (bench/restarted_system.py)",
    )
    parser.add_argument(
        "--restart-system-only", action="store_true", help="only the restarted system stage (on the running system)"
    )
    parser.add_argument(
        "--restart-system-messages",
        type=int,
        help="message events the log holds before the restart (default 100,000; --smoke 300)",
    )
    parser.add_argument(
        "--restart-system-rate", type=float, help="the rate after the restart (default 1,000 msg/s; --smoke 50)"
    )
    parser.add_argument("--restart-system-seconds", type=float, help="how long it is offered (default 60 s; --smoke 2)")
    parser.add_argument(
        "--scale-out",
        action="store_true",
        help="also the scale-out stage: the same sustained rate on one streams worker and one gateway, then with a "
        "second of each started by the bench; messages per CPU second of both (bench/scale_out.py)",
    )
    parser.add_argument(
        "--scale-out-only", action="store_true", help="only the scale-out stage (on the running system)"
    )
    parser.add_argument("--scale-out-rate", type=float, help="the scale-out stage's rate (default 1,000 msg/s)")
    parser.add_argument(
        "--scale-out-seconds", type=float, help="each of the scale-out stage's two runs (default 60 s; --smoke 2)"
    )
    parser.add_argument(
        "--scale-out-gateway-port", type=int, default=8090, help="the second gateway's port (default 8090)"
    )
    parser.add_argument("--no-start", action="store_true", help="fail instead of starting the system")
    parser.add_argument(
        "--gateway-pid", type=int, help="the gateway process to measure (default: the one `make run` started)"
    )
    parser.add_argument("--json", type=Path, default=ROOT / "bench/results/latest.json")
    args = parser.parse_args(argv)
    if args.restart_only:
        messages = args.restart_messages or (2000 if args.smoke else 200_000)
        results = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "smoke": args.smoke}
        results["restart"] = asyncio.run(
            measure_restart(GatewaySettings(), messages, args.restart_store, args.restart_from_nothing)
        )
        print(render(results))
        save(results, args.json)
        print(f"\nwritten to {args.json}")
        return 0
    if args.rebuild_only:
        results = asyncio.run(rebuild_only(args, SMOKE if args.smoke else FULL))
        print(render(results))
        save(results, args.json)
        print(f"\nwritten to {args.json}")
        return 0
    if args.no_start and not healthy(args.base_url):
        print(f"no system answers at {args.base_url}", file=sys.stderr)
        return 1
    ensure_running(args.base_url)
    args.profile = args.profile and not args.smoke
    sizes = SMOKE if args.smoke else FULL
    if args.restart_system_only:
        results = asyncio.run(restarted_system_only(args, sizes))
    elif args.scale_out_only:
        results = asyncio.run(scale_out_only(args, sizes))
    else:
        results = asyncio.run(run(args, sizes))
    print(render(results))
    save(results, args.json)
    print(f"\nwritten to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
