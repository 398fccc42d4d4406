"""CPU used by each part of the system over a stage, from /proc: which process bounds a figure."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def process_group(pid: int, named: dict[int, str]) -> str | None:
    """The part of the system `pid` belongs to, or None for a process that is not one."""
    if pid in named:
        return named[pid]
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    if comm == "postgres":
        return "postgresql"
    if comm.startswith("redis-server"):
        return "redis"
    if b"kafka.Kafka" in cmdline:
        return "kafka"
    return None


def cpu_seconds(pid: int) -> float:
    """User plus system time of `pid` (fields 14 and 15 of /proc/<pid>/stat, after the command)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S


def snapshot(named: dict[int, str]) -> dict[str, float]:
    """CPU seconds used so far by each group of processes alive now."""
    used: dict[str, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        group = process_group(int(entry), named)
        if group is None:
            continue
        try:
            used[group] = used.get(group, 0.0) + cpu_seconds(int(entry))
        except OSError:
            continue
    return used


def system_pid(root: Path, name: str) -> int | None:
    """The pid of one process `make run` started, as its supervisor knows it (None when it is not running)."""
    done = subprocess.run(
        [str(root / "scripts/system"), "pid", name], cwd=root, capture_output=True, text=True, check=False
    )
    pid = done.stdout.strip()
    return int(pid) if done.returncode == 0 and pid.isdigit() and pid != "0" else None


def system_pids(root: Path) -> dict[int, str]:
    """The processes `make run` started, and this benchmark client."""
    named = {os.getpid(): "bench client"}
    for name in ("gateway", "streams", "projections"):
        pid = system_pid(root, name)
        if pid:
            named[pid] = name
    return named


@dataclass
class CpuMeter:
    """Percent of one core used by each group between `start` and `stop`."""

    named: dict[int, str]
    started_at: float = 0.0
    before: dict[str, float] | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    """CPU seconds of each group between `start` and `stop` (set by `stop`)."""

    def start(self) -> None:
        self.before = snapshot(self.named)
        self.started_at = time.perf_counter()

    def stop(self) -> dict[str, float]:
        assert self.before is not None, "start() first"
        wall = time.perf_counter() - self.started_at
        after = snapshot(self.named)
        self.seconds = {g: after[g] - self.before.get(g, 0.0) for g in after}
        return {g: round(100 * s / wall, 1) for g, s in sorted(self.seconds.items(), key=lambda kv: -kv[1])}

    @property
    def total_seconds(self) -> float:
        """CPU seconds of every group together (the machine's work for the stage)."""
        return sum(self.seconds.values())
