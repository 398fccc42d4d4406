"""`message.delivered` records: the hand-written encoders and the decoder agree with the `SharedDelivery`
and (v1) `Delivery` schemas."""

from __future__ import annotations

import uuid

import orjson
import pytest
from pydantic import ValidationError

from schemas import codec
from schemas.commands import (
    Delivery,
    DeliveryBatch,
    SharedDelivery,
    decode_delivery,
    encode_delivery,
    encode_shared_delivery,
)

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
    assert decode_delivery(codec.dumps(delivery)) == DeliveryBatch([str(recipient)], FRAME, "s", str(recipient))
    unskipped = Delivery(recipient_id=recipient, frame=FRAME)
    assert decode_delivery(codec.dumps(unskipped)) == DeliveryBatch([str(recipient)], FRAME, None, None)


@pytest.mark.parametrize("skip", [None, "c0ffee"])
def test_encoded_shared_delivery_is_the_schema_s_json(skip: str | None) -> None:
    recipients = [uuid.uuid4() for _ in range(3)]
    skip_user = recipients[1] if skip else None
    encoded = encode_shared_delivery(
        [str(r) for r in recipients], orjson.dumps(FRAME), skip, str(skip_user) if skip_user else None
    )
    model = SharedDelivery(recipient_ids=recipients, frame=FRAME, skip_connection=skip, skip_user_id=skip_user)
    assert SharedDelivery.model_validate_json(encoded) == model
    assert orjson.loads(encoded) == orjson.loads(codec.dumps(model))
    assert decode_delivery(encoded) == DeliveryBatch(
        [str(r) for r in recipients], FRAME, skip, str(skip_user) if skip_user else None
    )


def test_a_shared_delivery_cannot_be_broken_out_of_by_an_id() -> None:
    encoded = encode_shared_delivery(['x"],"frame":{}}'], b"{}", None, None)
    assert orjson.loads(encoded)["recipient_ids"] == ['x"],"frame":{}}']
    with pytest.raises(ValueError, match="badly formed"):
        decode_delivery(encoded)


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
        b'{"recipient_ids": [], "frame": {}}',
        b'{"recipient_ids": "%s", "frame": {}}' % str(uuid.uuid4()).encode(),
        b'{"recipient_ids": [5], "frame": {}}',
        b'{"recipient_ids": ["%s"], "frame": {}, "skip_user_id": 5}' % str(uuid.uuid4()).encode(),
    ],
)
def test_a_record_that_is_no_delivery_is_refused_like_the_schema_does(data: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 any of its refusals: not JSON, not an object, a bad field
        decode_delivery(data)
    schema = SharedDelivery if b"recipient_ids" in data else Delivery
    with pytest.raises((ValidationError, ValueError)):
        schema.model_validate_json(data)
