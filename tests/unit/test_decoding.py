"""The bulk loader's decoding gives what `to_params` gives, record for record, good or bad."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest

from projections import decoding
from projections.apply import Skipped, to_params
from projections.catalogue import PROJECTIONS
from projections.decoding import current_event, params_of
from projections.model import Projection, Record
from schemas.events import decode_event
from tests.integration.test_projections_workload import T0, mixed_workload

SENT: dict[str, Any] = {
    "message_id": str(uuid.uuid4()),
    "chat_id": str(uuid.uuid4()),
    "seq": 3,
    "sender_id": str(uuid.uuid4()),
    "text": "hi",
    "client_msg_id": "c-3",
    "recipients": [str(uuid.uuid4())],
}


def envelope(type_: str = "message.sent", payload: object = SENT, **fields: object) -> bytes:
    return orjson.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "type": type_,
            "version": 1,
            "aggregate_id": str(uuid.uuid4()),
            "occurred_at": T0.isoformat(),
            "actor_id": None,
            "correlation_id": None,
            "payload": payload,
            **fields,
        }
    )


ODD_VALUES: list[bytes | None] = [
    None,
    b"",
    b"\xff not json",
    b"[]",
    b'{"type": "message.sent"}',
    envelope("message.reacted", {}),
    envelope("user.profile_updated", {"user_id": str(uuid.uuid4()), "bio": "b"}),
    envelope(version=2),
    envelope(version=0),
    envelope(version=True),
    envelope(version=1.0),
    envelope(payload=[]),
    envelope(payload={k: v for k, v in SENT.items() if k != "text"}),
    envelope(payload={**SENT, "text": "nul \x00 inside"}),
    envelope(payload={**SENT, "seq": 2**63}),
    envelope(payload={**SENT, "seq": 2**63 - 1, "extra": "ignored"}),
    envelope(payload={**SENT, "seq": "4"}),
    envelope(payload={**SENT, "seq": 0}),
    envelope(payload={**SENT, "chat_id": SENT["chat_id"].upper()}),
    envelope(occurred_at="2025-03-01T12:00:00"),
    envelope(occurred_at="yesterday"),
    envelope(actor_id="not a uuid"),
    envelope("message.read", {"chat_id": SENT["chat_id"], "user_id": SENT["sender_id"], "seq": -1}),
    envelope("message.deleted", {**SENT, "deleted_by": SENT["sender_id"]}),
    envelope("chat.created", {"chat_id": SENT["chat_id"], "type": "room", "title": None, "members": []}),
]


def outcome(result: object) -> object:
    """A `Skipped` compared by what it says, not by the identity of its record."""
    return (result.reason, result.detail) if isinstance(result, Skipped) else result


EVENT_PROJECTIONS = [p for p in PROJECTIONS.values() if p.decode is None]
"""The projections of event topics (the credentials projection's records are no events)."""


@pytest.mark.parametrize("projection", EVENT_PROJECTIONS, ids=lambda p: p.name)
def test_every_event_of_a_mixed_log_decodes_as_the_apply_code_decodes_it(projection: Projection) -> None:
    log = mixed_workload(seed=11, steps=300)
    records = log.records(projection.topic)
    assert records
    for record in records:
        assert params_of(projection, record) == to_params(projection, record)
        event, typed = decode_event(record.value), current_event(record.value or b"")
        assert {name: getattr(typed, name) for name in type(event).model_fields} == dict(event)


@pytest.mark.parametrize("value", ODD_VALUES, ids=range(len(ODD_VALUES)))
@pytest.mark.parametrize("projection", list(PROJECTIONS.values()), ids=lambda p: p.name)
def test_odd_and_bad_records_come_out_as_the_apply_code_says(projection: Projection, value: bytes | None) -> None:
    record = Record(0, 7, value)
    assert outcome(params_of(projection, record)) == outcome(to_params(projection, record))


def test_a_record_of_an_older_version_is_left_to_the_upcasters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(decoding.CURRENT, "message.sent", 2)
    assert current_event(envelope()) is None
