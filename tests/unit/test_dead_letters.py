"""The dead letters' records on the topic and what `list` makes of them (schemas/dead_letters.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import orjson
import pytest
import yaml
from pydantic import BaseModel

from projections.apply import Skipped
from projections.dead_letters import REQUEST_TTL, letter_of, replay_request
from projections.messages import MESSAGES
from projections.model import Record
from schemas.dead_letters import (
    DeadLetter,
    ReplayOutcome,
    ReplayRequest,
    decode_letter,
    encode_letter,
    find,
    key_of,
    page_of,
)
from streams.dead_letters import answer_in, describe
from tests.unit.test_openapi_spec import schema_differences

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
RAW = b'\xff\x00{"not": json\n'


class Logged(NamedTuple):
    value: bytes | None


def letter(offset: int = 7, consumer: str = "chat_decider", minutes: int = 0, value: bytes | None = RAW) -> DeadLetter:
    return DeadLetter(
        consumer=consumer,
        reason="malformed",
        detail="not a command",
        topic="p.message.send",
        partition=2,
        offset=offset,
        key=b"chat-1",
        value=value,
        occurred_at=T0 - timedelta(seconds=1),
        dead_at=T0 + timedelta(minutes=minutes),
    )


def logged(*records: DeadLetter | ReplayRequest | ReplayOutcome) -> list[Logged]:
    return [Logged(encode_letter(r)) for r in records]


def test_a_dead_letter_keeps_its_exact_bytes_through_json() -> None:
    dead = letter()
    encoded = encode_letter(dead)
    as_json = orjson.loads(encoded)
    assert isinstance(as_json["value"], str) and as_json["kind"] == "dead"
    assert decode_letter(encoded) == dead
    assert decode_letter(encoded).value == RAW  # type: ignore[union-attr]


def test_the_key_names_consumer_and_source_so_a_redelivery_is_the_same_letter() -> None:
    dead = letter()
    assert key_of(dead) == b"chat_decider|p.message.send|2|7"
    request = ReplayRequest(letter=dead, requested_at=T0)
    outcome = ReplayOutcome(kind="replayed", id=dead.id, at=T0, detail="x")
    assert key_of(request) == key_of(outcome) == key_of(dead)
    assert decode_letter(encode_letter(request)) == request
    assert decode_letter(encode_letter(outcome)) == outcome


def test_a_record_that_is_none_of_them_is_refused() -> None:
    with pytest.raises(ValueError, match=r"discriminator|tag"):
        decode_letter(b'{"kind": "other"}')


def test_list_folds_redeliveries_and_replays_into_one_entry_each() -> None:
    first, second = letter(7), letter(8, minutes=1)
    records = logged(
        first,
        second,
        first,  # sent again after a restart
        ReplayRequest(letter=second, requested_at=T0),
        ReplayOutcome(kind="replayed", id=second.id, at=T0, detail="applied"),
    )
    page = page_of([*records, Logged(b"junk")])
    assert [e.id for e in page.entries] == [second.id, first.id]  # newest first
    assert [(e.status, e.seen, e.outcome) for e in page.entries] == [("replayed", 1, "applied"), ("dead", 2, "")]
    assert (page.total, page.unreadable, page.next_after) == (2, 1, None)


def test_list_pages_with_a_cursor_and_filters_by_consumer() -> None:
    records = logged(*(letter(i, minutes=i) for i in range(5)), letter(9, consumer="messages", minutes=9))
    first = page_of(records, limit=2, consumer="chat_decider")
    assert [e.letter.offset for e in first.entries] == [4, 3] and first.total == 5
    assert first.next_after is not None
    second = page_of(records, after=first.next_after, limit=2, consumer="chat_decider")
    third = page_of(records, after=second.next_after, limit=2, consumer="chat_decider")
    assert [e.letter.offset for e in second.entries] == [2, 1]
    assert [e.letter.offset for e in third.entries] == [0] and third.next_after is None
    assert [e.letter.consumer for e in page_of(records, consumer="messages").entries] == ["messages"]


def test_a_cursor_not_made_by_the_list_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"isoformat|yesterday"):
        page_of([], after="yesterday/x")


def test_find_takes_an_id_or_topic_partition_offset() -> None:
    records = logged(letter(7), letter(7, consumer="messages"), letter(8))
    assert [e.id for e in find(records, "chat_decider|p.message.send|2|8")] == [letter(8).id]
    assert len(find(records, "p.message.send:2:7")) == 2
    assert find(records, "p.message.send:2:99") == [] and find(records, "nonsense") == []


def test_a_projection_letter_copies_the_record_it_skipped() -> None:
    record = Record(3, 41, b"\x00bad", b"chat-9", 1_700_000_000_123)
    dead = letter_of("messages", "p.message.events", Skipped(record, "malformed", "not an event"), T0)
    assert (dead.id, dead.key, dead.value, dead.reason) == (
        "messages|p.message.events|3|41",
        b"chat-9",
        b"\x00bad",
        "malformed",
    )
    assert dead.occurred_at == datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)


def test_the_worker_answers_recent_requests_of_its_own_projections_only() -> None:
    projections = {"messages": MESSAGES}
    mine = ReplayRequest(letter=letter(consumer="messages"), requested_at=T0)
    assert replay_request(encode_letter(mine), projections, T0 + timedelta(seconds=1)) == mine
    assert replay_request(encode_letter(mine), projections, T0 + REQUEST_TTL + timedelta(seconds=1)) is None
    agents = ReplayRequest(letter=letter(consumer="chat_decider"), requested_at=T0)
    assert replay_request(encode_letter(agents), projections, T0) is None
    assert replay_request(encode_letter(letter()), projections, T0) is None
    assert replay_request(b"junk", projections, T0) is None


def test_the_cli_reads_its_answer_and_prints_one_line_per_letter() -> None:
    outcome = ReplayOutcome(kind="replay_failed", id="a|b|0|1", at=T0, detail="still skipped")
    assert answer_in(encode_letter(outcome), "a|b|0|1") == outcome
    assert answer_in(encode_letter(outcome), "a|b|0|2") is None and answer_in(b"junk", "x") is None
    [entry] = page_of(logged(letter())).entries
    line = describe(entry)
    assert line.startswith("chat_decider|p.message.send|2|7  dead  malformed: not a command")
    assert f"{len(RAW)} bytes" in line


def test_asyncapi_describes_the_dead_letters_records_as_the_code_writes_them() -> None:
    doc = yaml.safe_load((Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml").read_text(encoding="utf-8"))
    models: dict[str, type[BaseModel]] = {
        "DeadLetter": DeadLetter,
        "ReplayRequest": ReplayRequest,
        "ReplayOutcome": ReplayOutcome,
    }
    problems = [
        p
        for name, model in models.items()
        for p in schema_differences(model, doc["components"]["schemas"][name], doc, name)
    ]
    assert not problems, problems
