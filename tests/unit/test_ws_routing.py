"""What crosses Redis between gateway instances, and how delivery records become routes."""

from __future__ import annotations

import uuid

from aiokafka import ConsumerRecord

from gateway.ws.delivery import message_position, route_of, without_repeated_resyncs
from gateway.ws.routing import Route, decode_message, encode_message
from schemas.commands import encode_delivery


def test_a_route_survives_the_channel_message_format() -> None:
    routes = [
        Route("u1", '{"type":"typing"}'),
        Route("u1", '{"type":"message.new"}', "conn-1", "chat-1", 42),
        Route("u1", "", resync=True),
    ]
    for route in routes:
        assert decode_message("u1", encode_message(route).encode()) == route


def record(value: bytes, timestamp_ms: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord("t", 0, 0, timestamp_ms, 0, None, value, None, len(value), 0, [])


def test_a_message_new_record_names_its_chat_and_seq_and_a_stale_one_asks_for_a_resync() -> None:
    user, chat = str(uuid.uuid4()), str(uuid.uuid4())
    frame = b'{"type":"message.new","message":{"chat_id":"%s","seq":7}}' % chat.encode()
    value = encode_delivery(user, frame, "conn")
    fresh = route_of(record(value, 2_000), oldest_ms=1_000)
    assert fresh is not None and (fresh.user_id, fresh.chat_id, fresh.seq, fresh.skip_connection) == (user, chat, 7, "conn")
    stale = route_of(record(value, 500), oldest_ms=1_000)
    assert stale == Route(user, "", resync=True)
    assert route_of(record(b"not json", 2_000), oldest_ms=1_000) is None


def test_only_message_new_frames_have_a_position() -> None:
    assert message_position({"type": "message.new", "message": {"chat_id": "c", "seq": 3}}) == ("c", 3)
    assert message_position({"type": "message.edited", "message": {"chat_id": "c", "seq": 3}}) == (None, 0)
    assert message_position({"type": "message.new", "message": {"chat_id": "c"}}) == (None, 0)


def test_a_stale_backlog_asks_each_recipient_for_one_resync() -> None:
    routes = [Route("a", "", resync=True), Route("a", "x"), Route("a", "", resync=True), None, Route("b", "", resync=True)]
    assert without_repeated_resyncs(routes) == [Route("a", "", resync=True), Route("a", "x"), Route("b", "", resync=True)]
