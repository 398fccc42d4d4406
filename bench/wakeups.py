"""What a cross-process wake-up costs on this machine: `python -m bench.wakeups` (not part of `make bench`).

Two processes ping-pong one byte over loopback TCP. Back to back, the receiver is often still
running when its byte arrives; with a gap between round trips, every byte wakes a process whose
core went idle, which is what each hop of a message pays at low rates. The CPU counted is both
processes' (user and system), so the kernel's share of a wake-up is in it.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from dataclasses import dataclass

from bench.cpu import cpu_seconds

GAPS_MS = (0.0, 1.0, 10.0)
ROUND_TRIPS = {0.0: 20_000, 1.0: 2_000, 10.0: 500}
WARM_UP = 200
CHILD_WAIT_S = 10.0
"""For the echoing child to connect, and to leave once the socket closes."""

ECHO = """
import socket, sys
peer = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
peer.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
while byte := peer.recv(1):
    peer.sendall(byte)
"""


@dataclass(frozen=True)
class WakeupCost:
    gap_ms: float
    round_trips: int
    wall_us: float
    """Per round trip, the gap excluded."""
    cpu_us: float
    """Per round trip, both processes, user and system."""


def measure(round_trips: int, gap_ms: float) -> WakeupCost:
    """Ping-pong `round_trips` bytes with an echoing child process, `gap_ms` apart."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.settimeout(CHILD_WAIT_S)
        child = subprocess.Popen([sys.executable, "-c", ECHO, str(server.getsockname()[1])])
        try:
            peer, _ = server.accept()
            with peer:
                peer.settimeout(None)
                peer.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return _ping_pong(peer, child.pid, round_trips, gap_ms)
        finally:
            try:
                child.wait(timeout=CHILD_WAIT_S)
            except subprocess.TimeoutExpired:
                child.kill()
                raise


def _ping_pong(peer: socket.socket, child_pid: int, round_trips: int, gap_ms: float) -> WakeupCost:
    for _ in range(WARM_UP):
        peer.sendall(b"x")
        peer.recv(1)
    gap_s = gap_ms / 1000
    busy_s = 0.0
    cpu_before = time.thread_time() + cpu_seconds(child_pid)
    for _ in range(round_trips):
        started = time.perf_counter()
        peer.sendall(b"x")
        peer.recv(1)
        busy_s += time.perf_counter() - started
        if gap_s:
            time.sleep(gap_s)
    cpu_s = time.thread_time() + cpu_seconds(child_pid) - cpu_before
    return WakeupCost(gap_ms, round_trips, busy_s / round_trips * 1e6, cpu_s / round_trips * 1e6)


def main() -> None:
    for gap_ms in GAPS_MS:
        cost = measure(ROUND_TRIPS[gap_ms], gap_ms)
        print(
            f"gap {gap_ms:4.0f} ms: {cost.round_trips:6,} round trips, {cost.wall_us:6.1f} us wall, "
            f"{cost.cpu_us:6.1f} us of CPU per round trip (both processes)",
            flush=True,
        )


if __name__ == "__main__":
    main()
