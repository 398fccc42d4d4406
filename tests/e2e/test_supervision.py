"""`scripts/system` runs the three processes under supervisord, which brings back any that dies.

A whole private system: its own data folder, ports, topics and database, on the shared services.
"""

from __future__ import annotations

import configparser
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.settings import CommonSettings
from streams.topics import create_topics
from tests.processes import ROOT, free_port

pytestmark = pytest.mark.e2e

SYSTEM = str(ROOT / "scripts" / "system")
PROGRAMS = ("streams", "projections", "gateway")
UP_TIMEOUT_S = 240.0
BACK_TIMEOUT_S = 120.0
"""A killed worker is spawned again at once; it answers /healthz once Faust has started."""


def system(env: dict[str, str], *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SYSTEM, *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def health(url: str) -> str:
    """ "200", or what came instead (not listening yet, or 503 with the parts that are down)."""
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return str(response.status)
    except urllib.error.HTTPError as error:
        return f"{error.code} {error.read()[:500]!r}"
    except Exception as error:  # not (yet) listening
        return repr(error)


def answers(url: str) -> bool:
    return health(url) == "200"


def pid_of(env: dict[str, str], name: str) -> int:
    done = system(env, "pid", name)
    return int(done.stdout.strip() or 0) if done.returncode == 0 else 0


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/status").exists() and "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()


def processes_using(marker: str) -> list[str]:
    """The command lines of every process whose command line names `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline and int(entry.name) != os.getpid():
            found.append(f"{entry.name}: {cmdline}")
    return found


def logs(data_dir: Path) -> str:
    parts = []
    for path in sorted((data_dir / "logs").glob("*.log")):
        parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}")
    return "\n".join(parts)


def private_system_env(
    prefix: str, partitions: int, database_url: str, jwt_secret: str, tmp_path: Path
) -> dict[str, str]:
    """The environment of a `scripts/system` of its own: data, ports, topics and gateway instance."""
    return {
        "MESSENGER_DATA_DIR": str(tmp_path / "data"),
        "PYTHON": sys.executable,
        "GATEWAY_PORT": str(free_port()),
        "STREAMS_WEB_PORT": str(free_port()),
        "PROJECTIONS_WEB_PORT": str(free_port()),
        "TOPIC_PREFIX": prefix,
        "TOPIC_PARTITIONS": str(partitions),
        "DATABASE_URL": database_url,
        "WORKER_DATA_DIR": str(tmp_path / "faust"),
        "GATEWAY_INSTANCE_ID": f"private{uuid.uuid4().hex[:6]}",
        "JWT_SECRET": jwt_secret,
    }


@pytest.fixture
async def system_env(topic_prefix: str, database_url: str, jwt_secret: str, tmp_path: Path) -> dict[str, str]:
    prefix = f"{topic_prefix}supervised{uuid.uuid4().hex[:6]}."
    await create_topics(CommonSettings(topic_prefix=prefix, topic_partitions=2))
    return private_system_env(prefix, 2, database_url, jwt_secret, tmp_path)


@pytest.fixture
def running_system(system_env: dict[str, str]) -> Iterator[dict[str, str]]:
    data_dir = Path(system_env["MESSENGER_DATA_DIR"])
    try:
        up = system(system_env, "up", timeout=UP_TIMEOUT_S)
        assert up.returncode == 0, f"{up.stdout}\n{up.stderr}\n{logs(data_dir)}"
        yield system_env
    finally:
        system(system_env, "down", timeout=120)


def line_of(status: str, name: str) -> str:
    return next((line for line in status.splitlines() if line.startswith(f"{name} ")), "")


def health_url(env: dict[str, str], name: str) -> str:
    port = {"streams": "STREAMS_WEB_PORT", "projections": "PROJECTIONS_WEB_PORT", "gateway": "GATEWAY_PORT"}[name]
    return f"http://127.0.0.1:{env[port]}/healthz"


def wait_back(env: dict[str, str], name: str, old_pid: int) -> int:
    """The new pid of `name` once supervisord has started it again, counts it RUNNING (up for
    `startsecs`) and it answers /healthz."""
    deadline = time.monotonic() + BACK_TIMEOUT_S
    while time.monotonic() < deadline:
        pid = pid_of(env, name)
        running = "RUNNING" in line_of(system(env, "status").stdout, name)
        if pid not in (0, old_pid) and running and answers(health_url(env, name)):
            return pid
        time.sleep(0.5)
    status = system(env, "status").stdout
    raise AssertionError(
        f"{name} not back within {BACK_TIMEOUT_S}s (/healthz: {health(health_url(env, name))}):\n"
        f"{status}\n{logs(Path(env['MESSENGER_DATA_DIR']))}"
    )


def assert_restarted_whatever_the_exit_and_stopped_gently(data_dir: Path) -> None:
    config = configparser.RawConfigParser()
    config.read(data_dir / "run" / "supervisord.conf")
    for name in PROGRAMS:
        program = config[f"program:{name}"]
        assert program["autorestart"] == "true", name  # not `unexpected`: exits 70 and 75 too
        assert int(program["startretries"]) >= 50, name
        assert program["stopsignal"] == "TERM" and int(program["stopwaitsecs"]) >= 15, name
        assert program["stopasgroup"] == program["killasgroup"] == "true", name
        assert program["directory"] == str(ROOT), name  # where `.env` is read


def test_killed_processes_come_back_by_themselves_and_down_leaves_nothing(running_system: dict[str, str]) -> None:
    env = running_system
    data_dir = env["MESSENGER_DATA_DIR"]
    supervisord_pid = int((Path(data_dir) / "run" / "supervisord.pid").read_text())
    assert_restarted_whatever_the_exit_and_stopped_gently(Path(data_dir))
    first = system(env, "status")
    assert first.returncode == 0, first.stdout + first.stderr
    for name in PROGRAMS:
        assert "RUNNING" in line_of(first.stdout, name) and "restarts 0" in line_of(first.stdout, name), first.stdout

    pids = {}
    for name in PROGRAMS:
        old = pid_of(env, name)
        assert old > 0 and answers(health_url(env, name)), name
        os.kill(old, signal.SIGKILL)
        pids[name] = wait_back(env, name, old)

    status = system(env, "status")
    assert status.returncode == 0, status.stdout + status.stderr
    for name in PROGRAMS:
        line = line_of(status.stdout, name)
        assert "RUNNING" in line and f"pid {pids[name]}," in line, line
        assert "restarts 1" in line and "SIGKILL" in line, line

    down = system(env, "down", timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not alive(supervisord_pid)
    for name, pid in pids.items():
        assert not alive(pid), name
    assert processes_using(data_dir) == []
    assert all(not answers(health_url(env, name)) for name in PROGRAMS)
    assert system(env, "status").returncode == 3
