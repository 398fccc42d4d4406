"""Start the system's processes from tests, as `make run` would, and wait until they answer."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_block(size: int) -> int:
    """The first of `size` consecutive free loopback ports, between 20000 and 40000: away from
    the shared services' ports and from the start of the ephemeral range."""
    for _ in range(200):
        first = random.randrange(20000, 40000 - size)
        if all(port_is_free(first + i) for i in range(size)):
            return first
    raise RuntimeError(f"no block of {size} free ports")


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    def kill9(self) -> None:
        self.stop(signal.SIGKILL)


def start(name: str, args: list[str], env: dict[str, str], log_dir: Path) -> Process:
    """Run `python -m <args>` from the project root with `env` added to this environment."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    with open(log_path, "ab") as out:
        popen = subprocess.Popen(
            [sys.executable, "-m", *args], cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT
        )
    return Process(name, popen, log_path, env)


def wait_http(process: Process, url: str, timeout: float = 60.0, expect: int = 200) -> None:
    """Wait until `url` answers `expect`; fail with the process's log if it dies or never does."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            raise AssertionError(f"{process.name} exited ({process.popen.returncode}):\n{process.log()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == expect:
                    return
        except Exception as error:  # not up yet
            last = repr(error)
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer {expect} in {timeout}s ({last}):\n{process.log()[-4000:]}")
