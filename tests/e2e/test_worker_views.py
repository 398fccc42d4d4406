"""A streams worker started as `make run` starts it serves Faust's web views on loopback, the ones
that show table contents only to the operator (contract v1.1, "Operators"; issue 10, row 12)."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from schemas import topics
from schemas.commands import CreateChat
from tests.integration.streams_harness import StreamsSystem, streams_system
from tests.processes import Process, free_port, start, wait_http

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
OPERATOR_TOKEN = secrets.token_urlsafe(32)
CLOSED_VIEWS = ["/table/", "/router/", "/stats/", "/", "/table/no-such-table/"]
"""Faust's views that show tables, their keys or their owners, and its index; all behind the token."""


@dataclass
class Views:
    url: str
    system: StreamsSystem


@pytest.fixture(scope="module")
async def views(topic_prefix: str, tmp_path_factory: pytest.TempPathFactory, jwt_secret: str) -> AsyncIterator[Views]:
    """A streams worker with `OPERATOR_TOKEN` set, and a command bus to fill its tables."""
    tmp_path = tmp_path_factory.mktemp("views")
    port = free_port()
    async with streams_system(f"{topic_prefix}views.", tmp_path, jwt_secret) as system:
        env = {
            "TOPIC_PREFIX": system.settings.topic_prefix,
            "TOPIC_PARTITIONS": str(system.settings.topic_partitions),
            "WORKER_WEB_PORT": str(port),
            "WORKER_DATA_DIR": str(tmp_path),
            "OPERATOR_TOKEN": OPERATOR_TOKEN,
        }
        worker = start("streams", ["streams", "worker", "-l", "info"], env, tmp_path)
        try:
            await asyncio.to_thread(wait_http, worker, f"http://127.0.0.1:{port}/healthz", 90)
            yield Views(f"http://127.0.0.1:{port}", system)
        finally:
            assert worker.stop() == 0, worker.log()[-3000:]


@pytest.fixture
def streams_worker(views: Views) -> str:
    return views.url


def get(url: str, token: str | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token is not None else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def refused(answer: tuple[int, dict[str, str], bytes]) -> dict[str, Any]:
    status, headers, body = answer
    assert status == 401, answer
    assert headers["Content-Type"].startswith("application/json") and "Bearer" in headers["WWW-Authenticate"]
    error: dict[str, Any] = json.loads(body)["error"]
    assert error["code"] == "unauthenticated" and error["message"]
    return error


def test_the_table_view_answers_the_operator(streams_worker: str) -> None:
    status, headers, body = get(f"{streams_worker}/table/", OPERATOR_TOKEN)
    assert status == 200 and isinstance(json.loads(body), list)
    assert headers["Cache-Control"] == "no-store"


async def test_a_table_value_is_shown_to_the_operator_only(views: Views) -> None:
    """A chat's state (its members) by key: to the operator, and to nobody else."""
    chat_id, owner, member = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    create = CreateChat(chat_id=chat_id, type="group", title="ops", member_ids=[member])
    assert (await views.system.bus.ask(topics.CHAT_COMMANDS, str(chat_id), create, owner)).ok
    url = f"{views.url}/table/chat_state/{chat_id}/"
    status, _, body = await asyncio.to_thread(get, url, OPERATOR_TOKEN)
    assert status == 200 and str(member) in body.decode(), body
    refused(await asyncio.to_thread(get, url))
    refused(await asyncio.to_thread(get, url, "x" * len(OPERATOR_TOKEN)))


@pytest.mark.parametrize("path", CLOSED_VIEWS)
def test_table_views_refuse_a_request_without_the_token(streams_worker: str, path: str) -> None:
    refused(get(streams_worker + path))


@pytest.mark.parametrize(
    "authorization", [f"Bearer {OPERATOR_TOKEN[:-1]}", f"Basic {OPERATOR_TOKEN}", OPERATOR_TOKEN, "Bearer", "Bearer  "]
)
def test_table_views_refuse_a_wrong_token(streams_worker: str, authorization: str) -> None:
    request = urllib.request.Request(f"{streams_worker}/table/", headers={"Authorization": authorization})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)
    refused((caught.value.code, dict(caught.value.headers), caught.value.read()))


def test_a_path_that_walks_out_of_an_open_page_is_refused(streams_worker: str) -> None:
    """The route matched decides, not the path as written."""
    for path in ("/healthz/../table/", "/metrics/%2e%2e/table/", "/healthz/x"):
        status = get(streams_worker + path)[0]
        assert status in (401, 404), path


def test_health_and_metrics_stay_open(streams_worker: str) -> None:
    status, _, body = get(f"{streams_worker}/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, _, body = get(f"{streams_worker}/metrics")
    assert status == 200 and b"python_info" in body


def test_without_a_token_on_loopback_the_worker_runs_and_tables_are_closed(topic_prefix: str, tmp_path: Path) -> None:
    """An empty OPERATOR_TOKEN on loopback: the worker starts (health and metrics answer) and
    nobody reads its tables, not even with an empty bearer token."""
    port = free_port()
    env = {
        "TOPIC_PREFIX": topic_prefix + "views-open.",
        "WORKER_WEB_PORT": str(port),
        "WORKER_DATA_DIR": str(tmp_path),
        "OPERATOR_TOKEN": "",
    }
    worker: Process = start("streams-no-token", ["streams", "worker", "-l", "info"], env, tmp_path)
    try:
        wait_http(worker, f"http://127.0.0.1:{port}/healthz", timeout=90)
        assert "OPERATOR_TOKEN" in refused(get(f"http://127.0.0.1:{port}/table/", ""))["message"]
        assert get(f"http://127.0.0.1:{port}/metrics")[0] == 200
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]


@pytest.mark.parametrize("module", ["streams", "projections"])
@pytest.mark.parametrize("token", ["", "short-but-not-empty"])
def test_a_worker_bound_beyond_loopback_without_a_token_does_not_start(module: str, token: str) -> None:
    env = {"WORKER_WEB_HOST": "0.0.0.0", "OPERATOR_TOKEN": token, "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", module, "worker"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "OPERATOR_TOKEN" in lines[0], done.stderr[-2000:]
