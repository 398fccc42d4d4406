"""The suite's one table (a row per fault, a column per counter), printed and written as Markdown
and JSON under `tests/chaos/results/` (ignored by git)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

from tests.chaos.checker import Counters

RESULTS_DIR = Path(__file__).resolve().parent / "results"
COLUMNS = (
    ("fault", "fault"),
    ("acked", "acked"),
    ("lost", "lost"),
    ("doubled", "stored twice"),
    ("gaps", "seq gaps"),
    ("duplicate_deliveries", "dup. deliveries"),
    ("missing_deliveries", "missing deliveries"),
    ("unacked", "unacked"),
    ("manual_actions", "manual actions"),
    ("recovery_s", "recovery (s)"),
    ("errors", "errors seen"),
)


def cell(counters: Counters, name: str) -> str:
    if name == "errors":
        return ", ".join(f"{code} {n}" for code, n in counters.errors.most_common()) or "-"
    if name == "recovery_s":
        return "never" if counters.recovery_s is None else f"{counters.recovery_s:.1f}"
    if name == "fault" and counters.crashed:
        return f"{counters.fault} (phase failed)"
    return str(getattr(counters, name))


def table(rows: list[Counters]) -> str:
    lines = ["| " + " | ".join(title for _, title in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(r, name) for name, _ in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


def details(rows: list[Counters]) -> str:
    """What stands behind each non-zero counter: a few instances and the phase's notes."""
    out = []
    for row in rows:
        if not row.examples and not row.notes:
            continue
        out.append(f"- **{row.fault}**")
        out += [f"  - {note}" for note in row.notes]
        for counter, examples in row.examples.items():
            out += [f"  - {counter}: {example}" for example in examples]
    return "\n".join(out)


def write(rows: list[Counters], command: str, directory: Path = RESULTS_DIR) -> Path:
    """`<stamp>.md` and `<stamp>.json`, and `latest.md`; returns the Markdown file."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    when = time.strftime("%Y-%m-%d %H:%M %Z")
    markdown = f"Fault suite, {when}: `{command}`\n\n{table(rows)}\n\n{details(rows)}\n"
    path = directory / f"{stamp}.md"
    path.write_text(markdown)
    (directory / "latest.md").write_text(markdown)
    payload = {"when": when, "command": command, "rows": [{**asdict(r), "errors": dict(r.errors)} for r in rows]}
    (directory / f"{stamp}.json").write_text(json.dumps(payload, indent=2))
    return path
