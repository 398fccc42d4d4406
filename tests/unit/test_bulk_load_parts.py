"""The bulk loader's bookkeeping: how partitions are shared out, when shares met, and its progress."""

from __future__ import annotations

import uuid

from projections.bulk_load import Counted, Scaled, ShareOutcome, overlap, shares
from projections.topic_reader import Span


def outcome(*chats: uuid.UUID, strangers: int = 0, conflict: str = "") -> ShareOutcome:
    return ShareOutcome(read=1, skipped=[], chat_ids=set(chats), strangers=strangers, conflict=conflict)


def test_partitions_are_dealt_out_by_size_whole() -> None:
    spans = {0: Span(0, 100), 1: Span(0, 60), 2: Span(0, 50), 3: Span(10, 10), 4: Span(0, 45)}
    groups = shares(spans, 2)
    assert sorted(sorted(g) for g in groups) == [[0, 4], [1, 2, 3]]
    assert shares({0: Span(0, 5)}, 2) == [{0: Span(0, 5)}], "no empty share"


def test_shares_that_cannot_have_needed_each_other_pass() -> None:
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    assert overlap([outcome(a, b), outcome(c)]) == ""


def test_a_chat_in_two_shares_an_unknown_message_or_a_key_written_twice_do_not() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    assert "two shares" in overlap([outcome(a, b), outcome(b)])
    assert "does not hold" in overlap([outcome(a), outcome(b, strangers=1)])
    assert overlap([outcome(a, conflict="duplicate key"), outcome(b)]) == "duplicate key"


def test_progress_counts_a_record_partly_when_folded_and_wholly_when_written() -> None:
    seen: list[int] = []
    scaled = Scaled(seen.append)
    scaled(10)
    scaled(10)
    assert sum(seen) == 14
    scaled.finish()
    assert sum(seen) == 20 and all(n > 0 for n in seen)


def test_a_second_attempt_reports_only_what_the_first_did_not() -> None:
    seen: list[int] = []
    first = Counted(seen.append)
    first(30)
    again = Counted(seen.append, first.done)
    again(20)
    again(20)
    again(15)
    assert seen == [30, 10, 15]
