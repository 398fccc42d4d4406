"""Where the time goes: py-spy profiles of the system's processes while a stage runs.

py-spy samples from outside (`--nonblocking`: the process is never paused) and only threads that
hold the GIL (`--gil`), so what it counts is Python at work, not a loop waiting for sockets. The
raw profiles (collapsed stacks, for flame-graph tools) are kept; the summary lists the functions
with the largest share of samples, on their own (self) and with what they call (inclusive).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SAMPLE_RATE_HZ = 100
TOP = 15


@dataclass
class Recording:
    name: str
    raw: Path
    process: subprocess.Popen[bytes]


def py_spy() -> str | None:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return found if Path(found).exists() else None


def start(pids: dict[str, int], seconds: float, out_dir: Path) -> list[Recording]:
    """Start one recording per process; empty when py-spy is missing."""
    binary = py_spy()
    if binary is None:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    recordings = []
    for name, pid in pids.items():
        raw = out_dir / f"profile-{name}.txt"
        command = [
            binary,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            str(SAMPLE_RATE_HZ),
            "--nonblocking",
            "--gil",
            "--format",
            "raw",
            "--output",
            str(raw),
        ]
        recordings.append(
            Recording(name, raw, subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        )
    return recordings


def finish(recordings: list[Recording]) -> dict[str, Any]:
    """Wait for the recordings; a summary per process (or why there is none)."""
    summaries: dict[str, Any] = {}
    for r in recordings:
        _, err = r.process.communicate()
        if r.process.returncode != 0 or not r.raw.exists():
            summaries[r.name] = {"error": err.decode(errors="replace").strip()[-300:]}
        else:
            summaries[r.name] = summarize(r.raw.read_text().splitlines()) | {"raw": str(r.raw)}
    return summaries


def summarize(lines: list[str], top: int = TOP) -> dict[str, Any]:
    """The `top` functions by self and by inclusive share of the samples of collapsed stacks
    (`frame;frame;frame count` per line)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in lines:
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    share = (lambda c: round(100 * c / total, 1)) if total else (lambda c: 0.0)
    return {
        "samples": total,
        "self": [[f, share(c)] for f, c in own.most_common(top)],
        "inclusive": [[f, share(c)] for f, c in inclusive.most_common(top * 2)],
    }
