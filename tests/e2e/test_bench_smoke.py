"""The benchmark with tiny numbers, against a system of real processes: it cannot rot.

The system is a private one run by `scripts/system` (its own data folder, ports, topics and
database, on the shared services), as `make run` runs the real one: the restarted system stage
restarts it with `scripts/system down`/`up`, and the bench finds its processes' pids through it.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from config.settings import CommonSettings
from streams.topics import create_topics
from tests.e2e.test_supervision import alive, logs, pid_of, private_system_env, system
from tests.processes import ROOT, free_port

pytestmark = pytest.mark.e2e

SMOKE_TIMEOUT_S = 420.0
RESTART_LOG = 1500
"""More message events than the smoke's other stages write (≈ 700), so that the stage fills."""


async def test_bench_smoke_runs_every_scenario(
    topic_prefix: str, database_url: str, tmp_path: Path, jwt_secret: str
) -> None:
    prefix = f"{topic_prefix}bench{uuid.uuid4().hex[:6]}."
    await create_topics(CommonSettings(topic_prefix=prefix, topic_partitions=4, database_url=database_url))
    env = private_system_env(prefix, 4, database_url, jwt_secret, tmp_path) | {"REGISTER_LIMIT_PER_ADDRESS": "100000"}
    second_gateway = free_port()
    out = tmp_path / "bench.json"
    try:
        up = await asyncio.to_thread(system, env, "up", timeout=240)
        assert up.returncode == 0, f"{up.stdout}\n{up.stderr}\n{logs(tmp_path / 'data')}"
        gateway_before = pid_of(env, "gateway")
        done = await asyncio.to_thread(
            subprocess.run,
            [
                sys.executable,
                "-m",
                "bench",
                "--smoke",
                "--no-start",
                "--no-rebuild",
                "--scale-out",
                "--scale-out-gateway-port",
                str(second_gateway),
                "--restart-system",
                "--restart-system-messages",
                str(RESTART_LOG),
                "--base-url",
                f"http://127.0.0.1:{env['GATEWAY_PORT']}",
                "--database-url",
                database_url,
                "--json",
                str(out),
            ],
            cwd=ROOT,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=SMOKE_TIMEOUT_S,
            check=False,
        )
        gateway_after = pid_of(env, "gateway")
    finally:
        await asyncio.to_thread(system, env, "down", timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:] + logs(tmp_path / "data")
    results = json.loads(out.read_text())
    assert results["latency"]["delivered"] == results["latency"]["messages"] == 20
    assert results["throughput"][0]["held"], results["throughput"]
    assert results["fanout"]["deliveries"] == results["fanout"]["expected_deliveries"]
    assert results["connections"]["sockets"] == 20 and results["connections"]["rss_per_socket_kib"] is not None
    assert set(results["floors"]) == {"kafka_round_trip", "postgres_insert_commit", "websocket_echo"}
    assert "latency p50 (ms)" in done.stdout
    assert_log_sizes(results)
    assert_scaled_out(results["scale_out"], out.parent / "scale-out-logs")
    assert_restarted(results["restarted_system"], gateway_before, gateway_after)
    assert "restarted system: log held" in done.stdout and "messages per CPU second" in done.stdout
    assert results["latency"]["wakeups_per_s"]["gateway"] > 0, results["latency"]["wakeups_per_s"]
    assert "wake-ups during latency (a second):" in done.stdout


def assert_log_sizes(results: dict[str, Any]) -> None:
    """Every stage records the log it ran on, and the log only grows from one to the next."""
    stages = [
        results["latency"],
        *results["throughput"],
        results["fanout"],
        results["connections"],
        results["scale_out"]["single"],
        results["scale_out"]["double"],
        results["restarted_system"],
    ]
    sizes = [stage["log_messages"] for stage in stages]
    assert sizes == sorted(sizes) and sizes[1] >= sizes[0] + 20, sizes  # the latency stage's sends are in


def assert_scaled_out(scale: dict[str, Any], log_dir: Path) -> None:
    single, double = scale["single"], scale["double"]
    assert single["held"] and double["held"], scale
    assert single["messages_per_cpu_s"] > 0 and double["messages_per_cpu_s"] > 0 and scale["per_cpu_ratio"] > 0
    assert {"streams 2", "gateway 2"} <= set(double["cpu_percent"]), double["cpu_percent"]
    assert "streams 2" not in single["cpu_percent"]
    assert "[^Worker]: Ready" in (log_dir / "streams-2.log").read_text(errors="replace")
    assert not any(alive(pid) for pid in double["extra_pids"].values()), "the extra processes were not stopped"


def assert_restarted(restarted: dict[str, Any], gateway_before: int, gateway_after: int) -> None:
    assert 0 not in (gateway_before, gateway_after) and gateway_after != gateway_before, "not restarted"
    assert restarted["fill"]["produced"] > 0 and restarted["log_messages"] >= RESTART_LOG, restarted
    assert restarted["up_to_healthy_s"] > 0
    # held or not is the figure the stage measures (a worker just restarted may still be joining its
    # group); that nothing is lost or doubled is not
    assert restarted["delivered_once"] == restarted["in_postgresql"] == restarted["messages"], restarted
    assert restarted["doubled"] == 0 and restarted["errors"] == 0, restarted


def test_the_restart_stage_fills_restarts_and_recovers_from_nothing(tmp_path: Path) -> None:
    """`python -m bench --restart-only` with a tiny log: its own worker, topics and data dir."""
    out = tmp_path / "restart.json"
    stage = ["--restart-only", "--restart-messages", "300", "--restart-from-nothing", "--json", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "bench", *stage],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    restart = json.loads(out.read_text())["restart"]
    assert restart["fill"]["rss_mb"] > 0 and restart["data_dir_mb"] > 0
    assert restart["restart"]["changelog_records_read"] <= 20  # the local state held the rest
    assert restart["from_nothing"]["changelog_records_read"] > 300  # every changelog (message_index: a key per send)
    assert "restarted on its data dir: first decision" in done.stdout
