"""The operator console's pure parts: merging the workers' shares, paging keys with a cursor, the
lag in seconds, and pages that escape everything they show. The real workers are tested in
tests/e2e/test_console.py."""

from __future__ import annotations

import random
import string
from datetime import UTC, datetime

import pytest

from console.html import el, link
from console.local import count_by_partition, smallest_keys
from console.merge import TableSpec, merge_keys, merge_table, pick_value, statuses
from console.offsets import lag_seconds, reference_offset
from console.render_extras import render_bad_records, render_rebuild
from console.render_tables import render_keys, render_tables, render_value
from console.render_topics import render_topics
from schemas.console import (
    BadRecordsPage,
    GroupOffset,
    KeyLocation,
    LocalKeys,
    LocalPartition,
    LocalTable,
    LocalTables,
    LocalValue,
    ProjectionLag,
    ProjectionPartitionLag,
    RebuildPage,
    TablesPage,
    TopicPartitionView,
    TopicsPage,
    TopicView,
    WorkerStatus,
)
from schemas.dead_letters import DeadLetter, DeadLetterEntry, DeadLetterPage
from schemas.progress import RebuildProgress

A, B = "http://a:1", "http://b:2"
SPEC = TableSpec("chat_state", "chat_id -> the chat", "app-chat_state-changelog", 4)
DISTRIBUTION = {A: {SPEC.changelog_topic: [0, 2]}, B: {SPEC.changelog_topic: [1, 3]}}


def share(worker: str, counts: dict[int, int], state: str = "active") -> LocalTables:
    partitions = [LocalPartition(partition=p, state=state, keys=n) for p, n in counts.items()]
    return LocalTables(
        worker=worker, app="app", rebalancing=False, tables=[LocalTable(name="chat_state", partitions=partitions)]
    )


def test_counts_are_merged_from_each_partitions_owner() -> None:
    answers = {A: share(A, {0: 5, 2: 7}), B: share(B, {1: 1, 3: 0})}
    view = merge_table(SPEC, DISTRIBUTION, answers, {0: 10, 1: 2, 2: 9, 3: 0})
    assert view.total_keys == 13 and view.complete
    assert [(p.partition, p.owner, p.keys, p.state, p.changelog_end_offset) for p in view.partitions] == [
        (0, A, 5, "active", 10),
        (1, B, 1, "active", 2),
        (2, A, 7, "active", 9),
        (3, B, 0, "active", 0),
    ]


def test_a_worker_that_does_not_answer_is_shown_never_left_out() -> None:
    view = merge_table(SPEC, DISTRIBUTION, {A: share(A, {0: 5, 2: 7}), B: None}, {})
    assert not view.complete and view.total_keys == 12
    down = [p for p in view.partitions if p.owner == B]
    assert [(p.state, p.keys, p.owner_answered) for p in down] == [("not answering", None, False)] * 2


def test_a_partition_nobody_owns_or_its_owner_does_not_report_is_said_so() -> None:
    distribution = {A: {SPEC.changelog_topic: [0, 1]}}
    view = merge_table(SPEC, distribution, {A: share(A, {0: 3})}, {})
    states = {p.partition: p.state for p in view.partitions}
    assert states == {0: "active", 1: "moving", 2: "unassigned", 3: "unassigned"}
    assert not view.complete


def test_recovery_progress_and_standbys_are_reported() -> None:
    recovering = LocalPartition(partition=0, state="recovering", keys=2, offset=25, highwater=100, remaining=75)
    owner = LocalTables(
        worker=A, app="app", rebalancing=False, tables=[LocalTable(name="chat_state", partitions=[recovering])]
    )
    view = merge_table(SPEC, {A: {SPEC.changelog_topic: [0]}}, {A: owner, B: share(B, {0: 2}, "standby")}, {})
    first = view.partitions[0]
    assert (first.state, first.recovered_offset, first.highwater, first.remaining, first.standbys) == (
        "recovering",
        25,
        100,
        75,
        [B],
    )


def test_keys_are_counted_by_their_recorded_partition() -> None:
    counts, unplaced = count_by_partition(4, {"a": 0, "b": 0, "c": 3})
    assert counts == {0: 2, 3: 1} and unplaced == 1


def worker_share(
    keys: dict[str, int], held: set[int], worker: str, prefix: str, after: str | None, limit: int
) -> LocalKeys:
    first, more = smallest_keys(keys, held, prefix, after, limit)
    return LocalKeys(keys=[KeyLocation(key=k, partition=p, worker=worker) for k, p in first], more=more)


@pytest.mark.parametrize("limit", [1, 3, 7, 50])
@pytest.mark.parametrize("prefix", ["", "a", "zz"])
def test_paging_walks_every_key_of_every_worker_exactly_once(limit: int, prefix: str) -> None:
    rng = random.Random(limit)
    keys = {"".join(rng.choices("abz", k=rng.randint(1, 4))): rng.randrange(4) for _ in range(120)}
    keys["stale"] = 9  # a revoked partition's leftover: held by no one, listed by no one
    held = {A: {0, 2}, B: {1, 3}}
    seen: list[str] = []
    after: str | None = None
    workers = statuses([A, B], {}, A)
    for _ in range(500):
        answers = {w: worker_share(keys, held[w], w, prefix, after, limit) for w in (A, B)}
        page = merge_keys("t", prefix, after, limit, answers, workers)
        assert len(page.keys) <= limit
        assert all(k.partition in held[k.worker] for k in page.keys)
        seen += [k.key for k in page.keys]
        if page.next_after is None:
            break
        after = page.next_after
    expected = sorted(k for k, p in keys.items() if p < 4 and k.startswith(prefix))
    assert seen == expected


def test_a_page_of_keys_says_when_a_worker_did_not_answer() -> None:
    workers = statuses([A, B], {B: "no answer within 3 s"}, A)
    answers: dict[str, LocalKeys | None] = {
        A: LocalKeys(keys=[KeyLocation(key="k", partition=0, worker=A)], more=False),
        B: None,
    }
    page = merge_keys("t", "", None, 10, answers, workers)
    assert not page.complete and [w.answered for w in page.workers] == [True, False]
    assert page.next_after is None


def test_a_value_comes_from_the_worker_holding_it() -> None:
    answers = {A: LocalValue(found=False), B: LocalValue(found=True, value={"t": 1}, partition=3)}
    view = pick_value("t", "k", answers, statuses([A, B], {}, A))
    assert (view.found, view.worker, view.partition, view.value) == (True, B, 3, {"t": 1})
    assert not pick_value("t", "k", {A: LocalValue(found=False), B: None}, statuses([A, B], {B: "x"}, A)).complete


@pytest.mark.parametrize(
    ("end", "next_offset", "newest", "applied", "seconds"),
    [(10, 10, None, None, 0.0), (10, 4, 9_000, 4_500, 4.5), (10, 4, None, 1, None), (10, 4, 1_000, 2_000, 0.0)],
)
def test_lag_in_seconds(
    end: int, next_offset: int, newest: int | None, applied: int | None, seconds: float | None
) -> None:
    assert lag_seconds(end, next_offset, newest, applied) == seconds


def test_the_lag_of_a_projection_that_applied_nothing_starts_at_the_first_record() -> None:
    assert reference_offset(0) == 0 and reference_offset(7) == 6


HOSTILE = '<script>alert("x")</script>&\'"'


def test_the_builder_escapes_text_and_attributes() -> None:
    built = el("a", HOSTILE, href=link("/p", {"key": HOSTILE}), data_key=HOSTILE)
    assert "<script>" not in built and 'alert("x")' not in built
    assert built.count("<a ") == 1 and built.endswith("</a>")


def test_pages_escape_keys_values_and_help_texts() -> None:
    workers = [WorkerStatus(url=A, answered=True, this_worker=True)]
    key = KeyLocation(key=HOSTILE, partition=0, worker=A)
    keys_page = merge_keys("t", HOSTILE, HOSTILE, 5, {A: LocalKeys(keys=[key], more=True)}, workers)
    value_page = pick_value("t", HOSTILE, {A: LocalValue(found=True, value={"text": HOSTILE}, partition=0)}, workers)
    spec = TableSpec("chat_state", HOSTILE, "changelog", 1)
    table = merge_table(spec, {A: {"changelog": [0]}}, {A: share(A, {0: 1})}, {0: 1})
    tables_page = TablesPage(app=HOSTILE, served_by=A, has_tables=True, workers=workers, tables=[table])
    for html in (render_keys(keys_page, A), render_value(value_page, A), render_tables(tables_page)):
        assert "<script>" not in html and 'alert("x")' not in html, html
        assert "&lt;script&gt;" in html


def test_keys_with_any_character_survive_the_link_to_their_value() -> None:
    key = "".join(random.Random(1).choices(string.printable + "é/?&#%", k=60))
    workers = [WorkerStatus(url=A, answered=True)]
    html = render_keys(
        merge_keys(
            "t", "", None, 5, {A: LocalKeys(keys=[KeyLocation(key=key, partition=0, worker=A)], more=False)}, workers
        ),
        A,
    )
    assert "/console/tables/t/value?key=" in html and "#" not in html.split("value?key=")[1].split('"')[0]


def test_bad_records_show_their_bytes_escaped() -> None:
    now = datetime.now(UTC)
    letter = DeadLetter(
        consumer="messages",
        reason="malformed",
        detail=HOSTILE,
        topic="message.events",
        partition=2,
        offset=41,
        key=b"k",
        value=HOSTILE.encode() + b"\xff",
        occurred_at=now,
        dead_at=now,
    )
    listing = DeadLetterPage(entries=[DeadLetterEntry(id=letter.id, letter=letter)], next_after="c", total=3)
    html = render_bad_records(BadRecordsPage(served_by=A, available=True, page=listing))
    assert "<script>" not in html and 'data-id="messages|message.events|2|41"' in html
    assert 'id="next-page"' in html and "message.events[2]@41" in html
    down = render_bad_records(BadRecordsPage(served_by=A, available=False, reason="cannot read"))
    assert 'id="bad-records-unavailable"' in down


def test_rebuild_progress_shows_each_projection_and_refreshes_itself() -> None:
    now = datetime.now(UTC)
    progress = RebuildProgress(
        projection="messages",
        phase="bulk",
        done=250,
        total=1000,
        events_per_s=51234.5,
        eta_s=14.6,
        started_at=now,
        updated_at=now,
        error="",
    )
    html = render_rebuild(RebuildPage(served_by=A, available=True, rebuilds=[progress]))
    assert 'data-projection="messages"' in html and 'class="rebuild-phase">bulk<' in html
    assert '<progress value="250" max="1000"' in html and 'http-equiv="refresh"' in html
    assert 'id="rebuild-none"' in render_rebuild(RebuildPage(served_by=A, available=True))


def test_the_topics_page_names_each_partition_and_lag() -> None:
    prefix = "test.x."
    lag = ProjectionLag(
        projection="chats",
        topic=prefix + "chat.events",
        lag_events=3,
        partitions=[
            ProjectionPartitionLag(partition=0, end_offset=9, next_offset=6, lag_events=3, lag_seconds=2.5),
            ProjectionPartitionLag(partition=1, end_offset=4, next_offset=4, lag_events=0, lag_seconds=0.0),
        ],
    )
    group = prefix + "messenger-streams"
    topic = TopicView(
        name=prefix + "chat.commands",
        doc=HOSTILE,
        key="chat_id",
        exists=True,
        partitions=[
            TopicPartitionView(partition=0, end_offset=7, groups=[GroupOffset(group=group, committed=5, lag=2)])
        ],
    )
    missing = TopicView(name=prefix + "dead.letters", doc="", key="", exists=False, partitions=[])
    view = TopicsPage(served_by=A, topic_prefix=prefix, groups=[group], topics=[topic, missing], projections=[lag])
    html = render_topics(view)
    assert "<script>" not in html
    assert 'data-projection="chats" data-partition="0"' in html and 'class="lag-seconds">2.5<' in html
    assert f'data-topic="{prefix}chat.commands" data-partition="0"' in html and 'class="group-lag"' in html
    assert "does not exist" in html
