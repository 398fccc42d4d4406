"""`python -m tests.chaos [--short] [--fault NAME]...`: the fault suite (`make chaos` runs it in
full; `make test` runs the short form as tests/chaos/test_chaos_short.py). Prints one table,
writes it under tests/chaos/results/, and exits 1 when any counter that must be zero is not."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import time

from tests.chaos import faults, report
from tests.chaos.suite import FULL, SHORT, run_suite


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--short", action="store_true", help="the short form: less load per fault, no cluster")
    parser.add_argument(
        "--fault", action="append", default=[], help="only faults whose name contains this (repeatable)"
    )
    parser.add_argument("--users", type=int, help="clients (default 8, short 6)")
    parser.add_argument("--rate", type=float, help="messages a second, all clients together (default 50, short 40)")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    timing = SHORT if args.short else FULL
    timing = dataclasses.replace(timing, users=args.users or timing.users, rate=args.rate or timing.rate)
    chosen = [f for f in faults.by_name(args.fault) if not (args.short and f.cluster)]
    if not chosen:
        print("no fault matches", args.fault, file=sys.stderr)
        return 2
    started = time.monotonic()
    logs = report.RESULTS_DIR / f"logs-{time.strftime('%Y%m%d-%H%M%S')}"
    rows = asyncio.run(run_suite(chosen, timing, logs))
    command = "python -m tests.chaos " + " ".join(argv)
    path = report.write(rows, command.strip())
    print(report.table(rows))
    print(report.details(rows))
    print(f"\n{len(rows)} faults in {time.monotonic() - started:.0f} s; written to {path}; processes' logs in {logs}")
    return 1 if any(any(r.violations.values()) for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
