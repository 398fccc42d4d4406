"""The benchmark's own instruments: profile summaries, CPU and wake-up accounting."""

from __future__ import annotations

import os
import time

from bench.cpu import CpuMeter, Usage, cpu_seconds, per_group
from bench.profile import summarize
from bench.report import lag_at, rate_ratio
from bench.wakeups import measure


def test_a_profile_summary_ranks_functions_by_own_and_inclusive_samples() -> None:
    lines = [
        "main (a.py:1);loop (a.py:2);write (b.py:3) 6",
        "main (a.py:1);loop (a.py:2);decode (c.py:4) 3",
        "main (a.py:1);idle (a.py:9) 1",
        "not a stack line",
    ]
    summary = summarize(lines, top=2)
    assert summary["samples"] == 10
    assert summary["self"] == [["write (b.py:3)", 60.0], ["decode (c.py:4)", 30.0]]
    assert summary["inclusive"][:2] == [["main (a.py:1)", 100.0], ["loop (a.py:2)", 90.0]]


def test_the_cpu_meter_sees_this_process_work() -> None:
    meter = CpuMeter({os.getpid(): "bench client"})
    meter.start()
    deadline = time.perf_counter() + 0.3
    while time.perf_counter() < deadline:
        pass
    used = meter.stop()
    assert used["bench client"] > 50.0, used


def test_the_meter_counts_the_wake_ups_of_a_thread_that_sleeps() -> None:
    meter = CpuMeter({os.getpid(): "bench client"})
    meter.start()
    for _ in range(20):
        time.sleep(0.005)
    meter.stop()
    assert meter.wakeups["bench client"] >= 20, meter.wakeups
    assert meter.wakeups_per_s["bench client"] > 0


def test_a_process_that_exits_between_snapshots_leaves_its_group_out_not_negative() -> None:
    before = {1: Usage("postgresql", 5.0, 100), 2: Usage("postgresql", 1.0, 10), 3: Usage("redis", 2.0, 7)}
    after = {2: Usage("postgresql", 1.5, 30), 3: Usage("redis", 2.25, 9), 4: Usage("postgresql", 0.5, 5)}
    seconds, woken = per_group(before, after)
    assert seconds == {"postgresql": 1.0, "redis": 0.25}
    assert woken == {"postgresql": 25, "redis": 2}


def test_rates_are_set_beside_the_floor_s_sequential_rate_and_lag_is_read_at_its_rate() -> None:
    assert rate_ratio(2000, 1.0, "Kafka round trips") == "2.00x sequential Kafka round trips (1,000/s)"
    assert rate_ratio(None, 1.0, "x") == ""
    runs = [
        {"offered_rate": 1000.0, "projection_lag": {"p99_ms": 44.0}},
        {"offered_rate": 2000.0, "projection_lag": {"p99_ms": 900.0}},
    ]
    assert lag_at(runs, 1000.0) == 44.0
    assert lag_at(runs[1:], 1000.0) is None


def test_a_process_cpu_is_read_from_proc() -> None:
    before = cpu_seconds(os.getpid())
    deadline = time.perf_counter() + 0.3
    while time.perf_counter() < deadline:
        pass
    assert cpu_seconds(os.getpid()) - before > 0.15


def test_the_wakeup_cost_counts_round_trips_with_an_echoing_process() -> None:
    cost = measure(100, gap_ms=10.0)
    assert cost.round_trips == 100
    assert cost.gap_ms == 10.0
    assert 0 < cost.wall_us < 5000, "the 10 ms gap is not in the round trip's wall time"
    assert cost.cpu_us > 0
