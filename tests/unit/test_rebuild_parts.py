"""The pure parts of the blue/green rebuild: declared DDL, the report, progress numbers, the
follower's buffer, the version gate's command."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import pytest

from projections.catalogue import PROJECTIONS
from projections.checksum import Checksum
from projections.follower import Follower
from projections.model import Record
from projections.rebuild import Rebuilt
from projections.rebuild_progress import ProgressRecorder, rate_and_eta
from projections.shadow import after_load_statements, retired_schema, shadow_schema
from projections.swap import Pauses
from projections.users import USERS
from projections.versions import upgrade_command
from schemas.progress import REBUILD_PROGRESS_SQL, RebuildPhase, RebuildProgress

AT = datetime(2026, 11, 30, tzinfo=UTC)


def test_a_table_is_created_with_its_columns_and_primary_key_only() -> None:
    users = USERS.tables[0]
    sql = users.create_sql()
    assert sql.startswith("CREATE TABLE users (\n    id uuid,\n")
    assert sql.endswith("created_at timestamptz NOT NULL,\n    PRIMARY KEY (id)\n)")
    assert "UNIQUE" not in sql and "INDEX" not in sql


def test_every_projection_declares_a_version_and_ddl_with_unqualified_names() -> None:
    for projection in PROJECTIONS.values():
        assert projection.version >= 1
        for table in projection.tables:
            assert table.columns, table.name
            assert set(table.key) <= {c.split()[0] for c in table.columns}, table.name
        for ddl in after_load_statements(projection):
            assert "public." not in ddl and "rebuild_" not in ddl, ddl
    assert shadow_schema(USERS) == "rebuild_users" and retired_schema(USERS) == "retired_users"


def test_progress_rate_and_time_left() -> None:
    assert rate_and_eta(0, 100, 0.0) == (0.0, None)
    assert rate_and_eta(50, 150, 2.0) == (25.0, 4.0)
    assert rate_and_eta(200, 150, 2.0) == (100.0, 0.0)


def test_the_progress_model_refuses_an_unknown_phase() -> None:
    row = {
        "projection": "users",
        "phase": "bulk",
        "done": 5,
        "total": 10,
        "events_per_s": 2.5,
        "eta_s": 2.0,
        "started_at": AT,
        "updated_at": AT,
        "error": "",
    }
    assert RebuildProgress.model_validate(row).phase == "bulk"
    with pytest.raises(ValueError, match="phase"):
        RebuildProgress.model_validate({**row, "phase": "dreaming"})
    assert "pg_locks" in REBUILD_PROGRESS_SQL and "hashtext(r.projection)" in REBUILD_PROGRESS_SQL


def sums(digest: str) -> list[Checksum]:
    return [Checksum("users", 3, digest), Checksum("user_credentials", 3, "c")]


def test_the_report_shows_both_sides_of_a_mismatch_only_where_they_differ() -> None:
    outcome = Rebuilt("users", 1, 1, records=6, offsets={0: 4, 1: 2})
    outcome.shadow_sums, outcome.live_sums = sums("a"), sums("b")
    lines = outcome.lines()
    assert lines[0] == "users: version 1, 6 records"
    assert lines[1] == "users: checksums at offsets 0:4 1:2: MISMATCH"
    assert lines[2].endswith("hash a  shadow") and lines[3].endswith("hash b  live")
    assert lines[4] == "  " + Checksum("user_credentials", 3, "c").line()
    assert not any("swapped" in line for line in lines)


def test_the_report_of_a_swap_says_how_long_the_worker_waited() -> None:
    outcome = Rebuilt("users", 1, 1, records=6, swapped=True, swap_attempts=2)
    outcome.shadow_sums = outcome.live_sums = sums("a")
    outcome.pauses = Pauses([3.25, 12.5])
    lines = outcome.lines()
    assert lines[1].endswith("shadow = live")
    assert lines[-1] == "users: swapped in (attempt 2); the live worker waited at most 12.5 ms at a time (2 pauses)"


def test_a_new_version_is_not_compared_and_says_why() -> None:
    outcome = Rebuilt("chats", 2, 1, swapped=True, note="checksums not compared: ...")
    assert not outcome.compares and Rebuilt("chats", 1, None).compares
    assert "chats: checksums not compared: ..." in outcome.lines()
    assert Rebuilt("chats", 1, 1, note="nothing to do").lines() == ["chats: nothing to do"]


async def test_the_follower_hands_out_records_below_the_targets_once_and_keeps_the_rest() -> None:
    follower = Follower({"bootstrap_servers": "localhost:1"}, "t", {0: 0, 1: 5})
    follower.buffered[0].extend(Record(0, o, b"") for o in range(4))
    follower.buffered[1].extend(Record(1, o, b"") for o in range(5, 9))
    assert [(r.partition, r.offset) for r in follower._take({0: 2, 1: 7})] == [(0, 0), (0, 1), (1, 5), (1, 6)]
    assert [(r.partition, r.offset) for r in follower._take({0: 2, 1: 9})] == [(1, 7), (1, 8)]
    assert [r.offset for r in follower.buffered[0]] == [2, 3]


def test_a_worker_upgrades_through_the_rebuild_command() -> None:
    assert upgrade_command("chats") == [
        sys.executable,
        "-m",
        "projections",
        "rebuild",
        "--only",
        "chats",
        "--upgrade",
        "--no-progress",
    ]


async def test_a_finished_rebuild_shows_the_records_it_replayed_and_their_rate() -> None:
    recorder = ProgressRecorder("postgresql://unused", "messages", bar=False)
    phases: list[tuple[RebuildPhase, int]] = [("bulk", 100), ("indexes", 3), ("catch_up", 7), ("swap", 1)]
    for phase, units in phases:
        recorder.phase(phase, units)
        recorder.advance(units)
    await recorder.end("done")
    finished = recorder.snapshot()
    assert (finished.phase, finished.done, finished.total) == ("done", 107, 107)
    assert finished.events_per_s > 0 and finished.eta_s == 0
