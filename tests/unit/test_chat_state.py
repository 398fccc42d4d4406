"""The chat decider's state and its table codec: the JSON the tables held when they held dicts."""

from __future__ import annotations

import orjson

from streams.chat_state import ChatState, StoredMessage, chat_from_json, message_from_json

CHAT_JSON = {
    "type": "group",
    "title": "t",
    "created_at": "2026-11-30T05:00:00+00:00",
    "created_by": "a",
    "members": {"a": "owner", "b": "member"},
    "last_seq": 7,
}
MESSAGE_JSON = {
    "id": "m",
    "chat_id": "c",
    "seq": 7,
    "sender_id": "a",
    "text": "hi",
    "client_msg_id": "c1",
    "created_at": "2026-11-30T05:00:00+00:00",
    "edited_at": None,
    "deleted": False,
}


def test_a_chat_reads_and_writes_the_json_of_an_existing_changelog() -> None:
    chat = chat_from_json(orjson.loads(orjson.dumps(CHAT_JSON)))
    assert chat == ChatState("group", "t", "2026-11-30T05:00:00+00:00", "a", {"a": "owner", "b": "member"}, 7)
    assert list(chat.members) == ["a", "b"], "join order is kept"
    assert orjson.loads(orjson.dumps(chat.to_json())) == CHAT_JSON
    assert chat.role_of("b") == "member" and chat.role_of("z") is None


def test_a_message_reads_and_writes_the_json_of_an_existing_changelog() -> None:
    message = message_from_json(orjson.loads(orjson.dumps(MESSAGE_JSON)))
    assert message == StoredMessage("m", "c", 7, "a", "hi", "c1", "2026-11-30T05:00:00+00:00")
    assert orjson.loads(orjson.dumps(message.to_json())) == MESSAGE_JSON
