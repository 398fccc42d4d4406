"""What crosses Redis between gateway instances, and how delivery records become routes."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import cast

from aiokafka import ConsumerRecord

from config.settings import GatewaySettings
from gateway.ws.delivery import (
    PUBLISH_MAX,
    DeliveryConsumer,
    decoded,
    message_position,
    new_partners,
    routes_of,
    without_repeated_resyncs,
)
from gateway.ws.routing import Route, UserChannels, decode_message, encode_message
from schemas.commands import encode_delivery, encode_shared_delivery


def test_a_route_survives_the_channel_message_format() -> None:
    routes = [
        Route("u1", '{"type":"typing"}'),
        Route("u1", '{"type":"message.new"}', "conn-1", "chat-1", 42),
        Route("u1", '{"type":"message.new"}', None, "chat-1", 43, "my-id"),
        Route("u1", "", resync=True),
        Route("u1", "5d41402abc4b2a76b9719d911017c592", session_end=True),
        Route("u1", "*", session_end=True),
    ]
    for route in routes:
        assert decode_message("u1", encode_message(route).encode()) == route


def record(value: bytes, timestamp_ms: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord("t", 0, 0, timestamp_ms, 0, None, value, None, len(value), 0, [])


def routes_of_record(value: bytes, timestamp_ms: int, oldest_ms: float) -> list[Route]:
    return routes_of(decoded(record(value, timestamp_ms)), timestamp_ms, oldest_ms)


def route_of_record(value: bytes, timestamp_ms: int, oldest_ms: float) -> Route | None:
    """The one route of a record of one recipient (a v1 `Delivery`, as older workers wrote)."""
    routes = routes_of_record(value, timestamp_ms, oldest_ms)
    assert len(routes) <= 1
    return routes[0] if routes else None


MESSAGE_NEW = b'{"type":"message.new","message":{"chat_id":"%s","seq":7,"sender_id":"%s","client_msg_id":"m"}}'


def test_a_shared_record_routes_its_frame_to_each_recipient_skipping_and_naming_only_for_the_sender() -> None:
    sender, chat = str(uuid.uuid4()), str(uuid.uuid4())
    others = [str(uuid.uuid4()) for _ in range(3)]
    value = encode_shared_delivery([sender, *others], MESSAGE_NEW % (chat.encode(), sender.encode()), "conn", sender)
    routes = routes_of_record(value, 2_000, 1_000)
    assert [r.user_id for r in routes] == [sender, *others], "every recipient, in the record's order"
    assert len({id(r.text) for r in routes}) == 1, "the frame is encoded once for all recipients"
    assert [(r.chat_id, r.seq) for r in routes] == [(chat, 7)] * 4
    assert [(r.skip_connection, r.sent_as) for r in routes] == [("conn", "m")] + [(None, None)] * 3
    stale = routes_of_record(value, 500, 1_000)
    assert stale == [Route(u, "", resync=True) for u in (sender, *others)]


def test_a_shared_record_with_a_recipient_that_is_no_uuid_is_skipped() -> None:
    value = encode_shared_delivery([str(uuid.uuid4()), 'x","y'], b'{"type":"typing"}', None, None)
    assert routes_of_record(value, 2_000, 1_000) == []


def test_a_message_new_record_names_its_chat_and_seq_and_a_stale_one_asks_for_a_resync() -> None:
    user, chat = str(uuid.uuid4()), str(uuid.uuid4())
    frame = MESSAGE_NEW
    value = encode_delivery(user, frame % (chat.encode(), user.encode()), "conn")
    fresh = route_of_record(value, 2_000, 1_000)
    assert fresh is not None
    assert (fresh.user_id, fresh.chat_id, fresh.seq, fresh.skip_connection, fresh.sent_as) == (
        user,
        chat,
        7,
        "conn",
        "m",
    )
    to_other = route_of_record(
        encode_delivery(str(uuid.uuid4()), frame % (chat.encode(), user.encode()), None), 2_000, 1_000
    )
    assert to_other is not None and to_other.sent_as is None, "only the sender's own frames name their client_msg_id"
    stale = route_of_record(value, 500, 1_000)
    assert stale == Route(user, "", resync=True)
    assert route_of_record(b"not json", 2_000, 1_000) is None


def test_only_message_new_frames_have_a_position() -> None:
    new = {"type": "message.new", "message": {"chat_id": "c", "seq": 3, "sender_id": "u", "client_msg_id": "m"}}
    assert message_position(new) == ("c", 3, "u", "m")
    assert message_position({**new, "type": "message.edited"}) == (None, 0, None, None)
    assert message_position({"type": "message.new", "message": {"chat_id": "c"}}) == (None, 0, None, None)


def test_a_stale_backlog_asks_each_recipient_for_one_resync() -> None:
    routes = [
        Route("a", "", resync=True),
        Route("a", "x"),
        Route("a", "", resync=True),
        None,
        Route("b", "", resync=True),
    ]
    assert list(without_repeated_resyncs(routes)) == [
        Route("a", "", resync=True),
        Route("a", "x"),
        Route("b", "", resync=True),
    ]


def test_a_chat_change_introduces_its_recipient_to_the_other_members() -> None:
    me, a, b = (str(uuid.uuid4()) for _ in range(3))
    members = [{"user_id": u, "role": "member"} for u in (me, a, b)]
    created = {"type": "chat.updated", "chat": {"id": "c", "members": members}}
    assert new_partners(created, me) == [a, b]
    added = {"type": "chat.member_added", "chat_id": "c", "user_id": b, "role": "member"}
    assert new_partners(added, me) == [b]
    assert new_partners({"type": "chat.member_added", "user_id": me}, me) == []
    assert new_partners({"type": "message.new", "message": {}}, me) == []


class RecordingChannels:
    """Takes what the consumer publishes, as `UserChannels.publish` does, one call per round trip."""

    def __init__(self) -> None:
        self.calls: list[list[Route]] = []

    async def publish(self, routes: Iterable[Route]) -> int:
        self.calls.append(list(routes))
        return len(self.calls[-1])


async def test_a_batch_naming_many_recipients_is_published_in_slices_in_order() -> None:
    channels = RecordingChannels()
    consumer = DeliveryConsumer(
        GatewaySettings(jwt_secret="0123456789abcdef" * 2), cast(UserChannels, channels), lambda users: no_one()
    )
    now_ms = int(time.time() * 1000)
    members = [[str(uuid.uuid4()) for _ in range(400)] for _ in range(3)]
    records = [
        record(encode_shared_delivery(users, b'{"type":"typing","n":%d}' % i, None, None), now_ms)
        for i, users in enumerate(members)
    ]
    await consumer._deliver(records)
    assert [len(call) for call in channels.calls] == [PUBLISH_MAX, 1200 - PUBLISH_MAX]
    published = [route.user_id for call in channels.calls for route in call]
    assert published == [user for users in members for user in users]


async def no_one() -> list[str]:
    return []
