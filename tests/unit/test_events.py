"""The event envelope: round trips, versions brought up to date when read, bad records named."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest

from schemas.events import (
    EVENT_TYPES,
    MalformedRecord,
    ReadMarkerMoved,
    UnknownEventType,
    Upcaster,
    decode_event,
    encode_event,
    event_id_for,
    new_event,
)


def read_marker_event() -> bytes:
    payload = ReadMarkerMoved(chat_id=uuid.uuid4(), user_id=uuid.uuid4(), seq=3)
    event = new_event(
        payload, aggregate_id=payload.chat_id, event_id=event_id_for("cmd", 0), actor_id=None, correlation_id="c"
    )
    return encode_event(event)


def test_an_event_survives_encoding_and_carries_the_contract_envelope() -> None:
    data = read_marker_event()
    envelope = orjson.loads(data)
    assert set(envelope) == {
        "event_id",
        "type",
        "version",
        "aggregate_id",
        "occurred_at",
        "actor_id",
        "correlation_id",
        "payload",
    }
    assert encode_event(decode_event(data)) == data


def test_event_ids_are_derived_from_the_command() -> None:
    assert event_id_for("cmd", 0) == event_id_for("cmd", 0) != event_id_for("cmd", 1)


def test_an_old_version_is_upcast_when_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if message.read were at version 2, whose payload renamed `seq` from v1's `position`."""
    monkeypatch.setitem(EVENT_TYPES, "message.read", (2, ReadMarkerMoved))
    old = orjson.loads(read_marker_event())
    old["version"] = 1
    old["payload"]["position"] = old["payload"].pop("seq")

    def rename(payload: dict[str, Any]) -> dict[str, Any]:
        return {**{k: v for k, v in payload.items() if k != "position"}, "seq": payload["position"]}

    upcasters: dict[tuple[str, int], Upcaster] = {("message.read", 1): rename}
    event = decode_event(orjson.dumps(old), upcasters)
    assert event.version == 2 and event.payload.seq == 3  # type: ignore[attr-defined]
    with pytest.raises(MalformedRecord, match="no upcaster"):
        decode_event(orjson.dumps(old), {})


def test_a_version_newer_than_the_code_is_malformed() -> None:
    record = orjson.loads(read_marker_event())
    record["version"] = 99
    with pytest.raises(MalformedRecord, match="newer"):
        decode_event(orjson.dumps(record))


@pytest.mark.parametrize("data", [b"", b"{", b"[1]", b'{"type": "message.read"}', b"\xff\xfe"])
def test_malformed_records_are_named_as_such(data: bytes) -> None:
    with pytest.raises(MalformedRecord):
        decode_event(data)


def test_an_unknown_type_is_its_own_error() -> None:
    record = orjson.loads(read_marker_event())
    record["type"] = "message.exploded"
    with pytest.raises(UnknownEventType):
        decode_event(orjson.dumps(record))


def test_a_bad_payload_is_malformed() -> None:
    record = orjson.loads(read_marker_event())
    record["payload"]["seq"] = -1
    with pytest.raises(MalformedRecord, match=r"bad message\.read payload"):
        decode_event(orjson.dumps(record))
