"""CPU used and wake-ups of each part of the system over a stage, from /proc: which process bounds a figure."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


def voluntary_switches(pid: int) -> int:
    """Voluntary context switches of every thread of `pid` so far: each is a thread that blocked
    (on a socket, a lock, a timer) and was woken again."""
    total = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        try:
            lines = status.read_text().splitlines()
        except OSError:
            continue
        total += sum(int(line.split()[1]) for line in lines if line.startswith("voluntary_ctxt_switches:"))
    return total


@dataclass(frozen=True)
class Usage:
    group: str
    cpu_s: float
    wakeups: int


def snapshot(named: dict[int, str]) -> dict[int, Usage]:
    """CPU seconds and wake-ups so far of each process of the system alive now, by pid."""
    used: dict[int, Usage] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        group = process_group(pid, named)
        if group is None:
            continue
        try:
            used[pid] = Usage(group, cpu_seconds(pid), voluntary_switches(pid))
        except OSError:
            continue
    return used


def per_group(before: dict[int, Usage], after: dict[int, Usage]) -> tuple[dict[str, float], dict[str, int]]:
    """CPU seconds and wake-ups of each group between two snapshots. Only processes alive at the
    second count, each from zero when it started in between: a process that exited in between
    (a PostgreSQL backend) leaves out its share instead of making its group's sum negative."""
    seconds: dict[str, float] = {}
    woken: dict[str, int] = {}
    for pid, now in after.items():
        then = before.get(pid)
        if then is not None and then.group != now.group:
            then = None
        seconds[now.group] = seconds.get(now.group, 0.0) + now.cpu_s - (then.cpu_s if then else 0.0)
        woken[now.group] = woken.get(now.group, 0) + now.wakeups - (then.wakeups if then else 0)
    return seconds, woken


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
    """Percent of one core used by each group between `start` and `stop`, and its wake-ups."""

    named: dict[int, str]
    started_at: float = 0.0
    before: dict[int, Usage] | None = None
    wall_s: float = 0.0
    seconds: dict[str, float] = field(default_factory=dict)
    """CPU seconds of each group between `start` and `stop` (set by `stop`)."""
    wakeups: dict[str, int] = field(default_factory=dict)
    """Voluntary context switches of each group between `start` and `stop` (set by `stop`)."""

    def start(self) -> None:
        self.before = snapshot(self.named)
        self.started_at = time.perf_counter()

    def stop(self) -> dict[str, float]:
        assert self.before is not None, "start() first"
        self.wall_s = time.perf_counter() - self.started_at
        self.seconds, self.wakeups = per_group(self.before, snapshot(self.named))
        return self.percent

    @property
    def percent(self) -> dict[str, float]:
        """Percent of one core used by each group, most first (set by `stop`)."""
        rates = {g: round(100 * s / self.wall_s, 1) for g, s in self.seconds.items()} if self.wall_s else {}
        return dict(sorted(rates.items(), key=lambda kv: -kv[1]))

    @property
    def total_seconds(self) -> float:
        """CPU seconds of every group together (the machine's work for the stage)."""
        return sum(self.seconds.values())

    @property
    def wakeups_per_s(self) -> dict[str, int]:
        """Wake-ups a second of each group, most first (set by `stop`)."""
        rates = {g: round(n / self.wall_s) for g, n in self.wakeups.items()} if self.wall_s else {}
        return dict(sorted(rates.items(), key=lambda kv: -kv[1]))

    def figures(self) -> dict[str, Any]:
        """What a stage's result keeps of the meter, under the keys the report reads."""
        return {"cpu_percent": self.percent, "wakeups_per_s": self.wakeups_per_s}
