"""How the chat agent cuts a decision's deliveries into `message.delivered` records: one per frame."""

from __future__ import annotations

import pytest

from schemas.commands import DeliveryRecord
from streams import pipeline
from streams.pipeline import shared_groups


def test_a_frame_s_recipients_share_one_record_and_another_frame_starts_the_next() -> None:
    new, updated = {"type": "message.new"}, {"type": "chat.updated"}
    deliveries = [DeliveryRecord(u, new, "conn" if u == "a" else None) for u in "abc"]
    deliveries.append(DeliveryRecord("d", updated, None))
    assert [[d.recipient_id for d in group] for group in shared_groups(deliveries)] == [["a", "b", "c"], ["d"]]


def test_an_equal_frame_that_is_another_object_is_another_record() -> None:
    """Frames are compared by identity, as the rules build one per `deliver` call: cheap, and
    never merges two frames that only look alike now."""
    deliveries = [DeliveryRecord("a", {"type": "x"}, None), DeliveryRecord("b", {"type": "x"}, None)]
    assert len(shared_groups(deliveries)) == 2


def test_a_second_skipped_socket_starts_a_record_of_its_own() -> None:
    frame = {"type": "message.new"}
    deliveries = [DeliveryRecord("a", frame, "c1"), DeliveryRecord("b", frame, None), DeliveryRecord("c", frame, "c2")]
    assert [[d.recipient_id for d in group] for group in shared_groups(deliveries)] == [["a", "b"], ["c"]]


def test_a_record_holds_at_most_its_share_of_recipients(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline, "RECIPIENTS_PER_RECORD", 2)
    frame = {"type": "message.new"}
    groups = shared_groups([DeliveryRecord(str(i), frame, None) for i in range(5)])
    assert [len(group) for group in groups] == [2, 2, 1]
    assert shared_groups([]) == []
