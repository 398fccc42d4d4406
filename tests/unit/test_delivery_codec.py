"""`message.delivered` records: the hand-written encoder and decoder agree with the `Delivery` schema."""

from __future__ import annotations

import uuid

import orjson
import pytest
from pydantic import ValidationError

from schemas import codec
from schemas.commands import Delivery, DeliveryRecord, decode_delivery, encode_delivery

FRAME = {"type": "message.new", "message": {"id": str(uuid.uuid4()), "text": 'quote " and \n newline', "seq": 7}}


@pytest.mark.parametrize("skip", [None, "c0ffee"])
def test_encoded_delivery_is_the_schema_s_json(skip: str | None) -> None:
    recipient = uuid.uuid4()
    encoded = encode_delivery(str(recipient), orjson.dumps(FRAME), skip)
    assert Delivery.model_validate_json(encoded) == Delivery(recipient_id=recipient, frame=FRAME, skip_connection=skip)
    assert orjson.loads(encoded) == orjson.loads(
        codec.dumps(Delivery(recipient_id=recipient, frame=FRAME, skip_connection=skip))
    )


def test_encoding_refuses_a_recipient_that_is_no_uuid() -> None:
    with pytest.raises(ValueError, match="badly formed"):
        encode_delivery('x","frame":{}}', b"{}", None)


def test_decoded_delivery_gives_recipient_frame_and_skip() -> None:
    recipient = uuid.uuid4()
    delivery = Delivery(recipient_id=recipient, frame=FRAME, skip_connection="s")
    assert decode_delivery(codec.dumps(delivery)) == DeliveryRecord(str(recipient), FRAME, "s")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"[]",
        b'"text"',
        b'{"frame": {}}',
        b'{"recipient_id": "not-a-uuid", "frame": {}}',
        b'{"recipient_id": "%s", "frame": []}' % str(uuid.uuid4()).encode(),
        b'{"recipient_id": "%s", "frame": {}, "skip_connection": 5}' % str(uuid.uuid4()).encode(),
    ],
)
def test_a_record_that_is_no_delivery_is_refused_like_the_schema_does(data: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 any of its refusals: not JSON, not an object, a bad field
        decode_delivery(data)
    with pytest.raises((ValidationError, ValueError)):
        Delivery.model_validate_json(data)
