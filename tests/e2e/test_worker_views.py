"""A streams worker started as `make run` starts it serves Faust's web views on loopback."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from tests.processes import free_port, start, wait_http

pytestmark = pytest.mark.e2e


def test_streams_worker_serves_table_view_and_health(topic_prefix: str, tmp_path: Path) -> None:
    port = free_port()
    env = {"TOPIC_PREFIX": topic_prefix + "views.", "WORKER_WEB_PORT": str(port), "WORKER_DATA_DIR": str(tmp_path)}
    worker = start("streams", ["streams", "worker", "-l", "info"], env, tmp_path)
    try:
        wait_http(worker, f"http://127.0.0.1:{port}/healthz", timeout=90)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/table/", timeout=5) as response:
            assert isinstance(json.loads(response.read()), list)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            assert b"python_info" in response.read()
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]
