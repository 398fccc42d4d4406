"""The benchmark with tiny numbers, against a system of real processes: it cannot rot."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from config.settings import CommonSettings
from streams.topics import create_topics
from tests.e2e.workers import running_workers, worker_env
from tests.processes import ROOT, free_port, start, wait_http

pytestmark = pytest.mark.e2e


async def test_bench_smoke_runs_every_scenario(
    topic_prefix: str, database_url: str, tmp_path: Path, jwt_secret: str
) -> None:
    prefix = f"{topic_prefix}bench."
    await create_topics(CommonSettings(topic_prefix=prefix, topic_partitions=4, database_url=database_url))
    port = free_port()
    env = {
        **worker_env(prefix, database_url, 4, tmp_path / "faust"),
        "GATEWAY_PORT": str(port),
        "JWT_SECRET": jwt_secret,
        "GATEWAY_INSTANCE_ID": f"bench-{uuid.uuid4().hex[:6]}",
    }
    with running_workers(prefix, database_url, tmp_path):
        gateway = start("gateway", ["gateway"], env, tmp_path)
        try:
            wait_http(gateway, f"http://127.0.0.1:{port}/healthz", timeout=60)
            out = tmp_path / "bench.json"
            done = await asyncio.to_thread(
                subprocess.run,
                [
                    sys.executable,
                    "-m",
                    "bench",
                    "--smoke",
                    "--no-start",
                    "--no-rebuild",
                    "--base-url",
                    f"http://127.0.0.1:{port}",
                    "--database-url",
                    database_url,
                    "--gateway-pid",
                    str(gateway.popen.pid),
                    "--json",
                    str(out),
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=240,
                check=False,
            )
        finally:
            gateway.stop()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["latency"]["delivered"] == results["latency"]["messages"] == 20
    assert results["throughput"][0]["held"], results["throughput"]
    assert results["fanout"]["deliveries"] == results["fanout"]["expected_deliveries"]
    assert results["connections"]["sockets"] == 20 and results["connections"]["rss_per_socket_kib"] is not None
    assert set(results["floors"]) == {"kafka_round_trip", "postgres_insert_commit", "websocket_echo"}
    assert "latency p50 (ms)" in done.stdout


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
    assert restart["from_nothing"]["changelog_records_read"] >= 2 * 300  # every changelog from its start
    assert "restarted on its data dir: first decision" in done.stdout
