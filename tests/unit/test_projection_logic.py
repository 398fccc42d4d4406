"""The pure parts of the projections: offsets, classification of records, lag, checksums, retries."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import orjson
import pytest

from projections.apply import OffsetGap, Skipped, check_contiguous, new_records, storable, to_params
from projections.bulk_load import shares
from projections.catalogue import PROJECTIONS, selected
from projections.checksum import checksum_query, read_model_tables
from projections.messages import MESSAGES
from projections.model import Record, Table
from projections.retry import GaveUp, with_retries
from projections.runtime import PartitionLag, lag_json
from projections.topic_reader import Span
from projections.users import USERS
from schemas.events import MessageSent, Payload, UserRegistered, encode_event, new_event
from schemas.progress import ProjectionProgress

AT = datetime(2025, 1, 1, tzinfo=UTC)


def encoded(payload: Payload, aggregate: uuid.UUID) -> bytes:
    event = new_event(
        payload, aggregate_id=aggregate, event_id=uuid.uuid4(), actor_id=None, correlation_id=None, occurred_at=AT
    )
    return encode_event(event)


def registered(username: str = "ann") -> bytes:
    user = uuid.uuid4()
    payload = UserRegistered(user_id=user, username=username, display_name="Ann", password_hash="h")
    return encoded(payload, user)


def test_new_records_skip_what_is_below_next_offset_and_repeats() -> None:
    records = [Record(0, 4, b""), Record(1, 0, b""), Record(0, 5, b""), Record(0, 5, b""), Record(0, 6, b"")]
    fresh, moved = new_records(records, {0: 5, 1: 0})
    assert [(r.partition, r.offset) for r in fresh] == [(1, 0), (0, 5), (0, 6)]
    assert moved == {0: 7, 1: 1}


def test_new_records_move_nothing_for_a_batch_applied_already() -> None:
    assert new_records([Record(2, 3, b"")], {2: 10}) == ([], {})


def test_a_hole_before_the_first_new_record_of_a_partition_is_a_gap() -> None:
    check_contiguous([Record(0, 5, b""), Record(1, 9, b"")], {0: 5, 1: 9})
    check_contiguous([Record(0, 0, b"")], {})
    with pytest.raises(OffsetGap, match="partition 1: next_offset is 9, first record is at 12"):
        check_contiguous([Record(0, 5, b""), Record(1, 12, b"")], {0: 5, 1: 9})


def test_the_notify_payload_names_projection_topic_partition_and_next_offset() -> None:
    progress = ProjectionProgress("messages", "prod.message.events", 3, 1200)
    assert progress.encode() == "messages:prod.message.events:3:1200"
    assert ProjectionProgress.decode(progress.encode()) == progress


def test_postgresql_cannot_store_a_nul_in_text_nor_an_integer_beyond_bigint() -> None:
    assert storable(("text", 2**63 - 1, True, None, ["a"]))
    assert not storable(("a\x00b",))
    assert not storable((2**63,))


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "malformed"),
        (b"", "malformed"),
        (b"[1, 2]", "malformed"),
        (orjson.dumps({"type": "user.registered"}), "malformed"),
    ],
)
def test_records_that_are_no_event_are_malformed(value: bytes | None, reason: str) -> None:
    outcome = to_params(USERS, Record(0, 0, value))
    assert isinstance(outcome, Skipped) and outcome.reason == reason


def test_an_event_of_another_topic_is_of_an_unknown_type_here() -> None:
    outcome = to_params(MESSAGES, Record(0, 0, registered()))
    assert isinstance(outcome, Skipped)
    assert outcome.reason == "unknown_type" and "messages projection" in outcome.detail


def test_a_good_record_gives_the_statement_parameters_in_order() -> None:
    chat, sender, message = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    payload = MessageSent(
        message_id=message, chat_id=chat, seq=4, sender_id=sender, text="hi", client_msg_id="c", recipients=[sender]
    )
    assert to_params(MESSAGES, Record(0, 0, encoded(payload, chat))) == (
        "message.sent",
        chat,
        message,
        4,
        sender,
        "hi",
        "c",
        [sender],
        AT,
    )


def test_every_projection_reads_its_own_topic_into_its_own_tables() -> None:
    topic_names = [p.topic.name for p in PROJECTIONS.values()]
    assert topic_names == ["user.events", "chat.events", "message.events", "user.credentials"]
    tables = [t.name for t in read_model_tables()]
    assert len(tables) == len(set(tables)) == 9
    assert [p.name for p in selected(["messages", "users"])] == ["users", "messages"]
    assert selected(None) == list(PROJECTIONS.values())


def test_the_checksum_hashes_whole_rows_of_the_schema_asked() -> None:
    query = checksum_query(Table("read_markers", ("chat_id", "user_id"), ("chat_id uuid", "user_id uuid")))
    assert "hash_record_extended(t, 0)" in query and "sum(h::numeric)" in query and "bit_xor(h)" in query
    assert query.endswith("FROM public.read_markers AS t) AS hashed")
    assert "FROM rebuild_messages.messages AS t" in checksum_query(MESSAGES.tables[0], "rebuild_messages")


def test_the_lag_report_sums_partitions_and_projections() -> None:
    report = lag_json(
        {"users": "u", "chats": "c"},
        {"users": {0: PartitionLag(10, 7), 1: PartitionLag(3, 3)}, "chats": {0: PartitionLag(2, 5)}},
    )
    assert report["lag"] == 3
    assert report["projections"]["users"] == {
        "topic": "u",
        "lag": 3,
        "partitions": {
            "0": {"end_offset": 10, "next_offset": 7, "lag": 3},
            "1": {"end_offset": 3, "next_offset": 3, "lag": 0},
        },
    }
    assert report["projections"]["chats"]["lag"] == 0


def test_a_span_counts_the_offsets_it_covers() -> None:
    assert Span(3, 10).size == 7 and Span(5, 5).size == 0 and Span(6, 2).size == 0


async def test_database_errors_are_retried_a_bounded_number_of_times() -> None:
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise asyncpg.exceptions.ConnectionDoesNotExistError("gone")
        return "done"

    assert await with_retries(flaky, "flaky", attempts=3, first_delay=0.001) == "done"

    async def broken() -> str:
        raise OSError("refused")

    with pytest.raises(GaveUp, match="broken: failed 2 times"):
        await with_retries(broken, "broken", attempts=2, first_delay=0.001)


async def test_other_errors_are_not_retried() -> None:
    calls: list[int] = []

    async def buggy() -> None:
        calls.append(1)
        raise KeyError("bug")

    with pytest.raises(KeyError):
        await with_retries(buggy, "buggy", attempts=5, first_delay=0.001)
    assert calls == [1]


def test_rebuild_deals_every_partition_to_one_applier_evenly() -> None:
    spans = {p: Span(0, size) for p, size in enumerate([900, 100, 400, 400, 300, 300, 0, 600])}
    groups = shares(spans, 3)
    dealt = [p for g in groups for p in g]
    assert sorted(dealt) == sorted(spans)
    loads = sorted(sum(s.size for s in g.values()) for g in groups)
    assert sum(loads) == 3000
    assert loads[-1] - loads[0] <= 300, "dealt largest first, no applier gets much more than another"
