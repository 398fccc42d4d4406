"""The fault suite's short form, inside `make test`: every single-broker fault once, a short load
each, on a private stack (its own PostgreSQL, Redis, Kafka and supervised processes on free
ports), and every counter that must be zero is zero. `make chaos` runs the full form."""

from __future__ import annotations

import pytest

from tests.chaos import faults, report
from tests.chaos.suite import SHORT, run_suite

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(1800)
async def test_every_fault_heals_without_loss_or_help() -> None:
    chosen = [f for f in faults.ALL if not f.cluster]
    rows = await run_suite(chosen, SHORT, report.RESULTS_DIR / "logs-short")
    report.write(rows, "pytest tests/chaos/test_chaos_short.py")
    print("\n" + report.table(rows) + "\n" + report.details(rows))
    assert [r.fault for r in rows] == [f.name for f in chosen]
    failing = {r.fault: {k: v for k, v in r.violations.items() if v} for r in rows if any(r.violations.values())}
    assert not failing, f"counters that must be zero are not:\n{report.table(rows)}\n{report.details(rows)}"
