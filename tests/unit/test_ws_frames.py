"""Client frames: what parses, and the error frame each malformed one gets."""

from __future__ import annotations

import uuid

import orjson
import pytest

from schemas.commands import TEXT_MAX
from schemas.frames import (
    ACCESS_TOKEN_MAX,
    AuthFrame,
    DeleteFrame,
    EditFrame,
    FrameRefused,
    PingFrame,
    ReadFrame,
    SendFrame,
    SyncFrame,
    TypingFrame,
    encode_frame,
    message_new_frame,
    parse_client_frame,
)

CHAT = str(uuid.uuid4())
MESSAGE = str(uuid.uuid4())


def frame(**fields: object) -> str:
    return orjson.dumps(fields).decode()


def refused(text: str | bytes) -> FrameRefused:
    with pytest.raises(FrameRefused) as caught:
        parse_client_frame(text)
    return caught.value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (frame(type="message.send", chat_id=CHAT, client_msg_id="c1", text="hi"), SendFrame),
        (frame(type="message.edit", message_id=MESSAGE, text="hi"), EditFrame),
        (frame(type="message.delete", message_id=MESSAGE), DeleteFrame),
        (frame(type="read", chat_id=CHAT, seq=3), ReadFrame),
        (frame(type="typing", chat_id=CHAT), TypingFrame),
        (frame(type="sync", chat_id=CHAT, after_seq=0), SyncFrame),
        (frame(type="ping"), PingFrame),
        (frame(type="auth", token="a.b.c"), AuthFrame),
    ],
)
def test_every_client_frame_type_parses(text: str, expected: type) -> None:
    assert isinstance(parse_client_frame(text).frame, expected)


def test_a_send_keeps_its_fields() -> None:
    parsed, ref = parse_client_frame(frame(type="message.send", chat_id=CHAT, client_msg_id="c1", text="héllo\n"))
    assert isinstance(parsed, SendFrame) and ref == "c1"
    assert (parsed.chat_id, parsed.client_msg_id, parsed.text) == (uuid.UUID(CHAT), "c1", "héllo\n")


def test_unknown_fields_are_ignored() -> None:
    assert parse_client_frame(frame(type="ping", extra={"a": 1})) == (PingFrame(type="ping"), None)


@pytest.mark.parametrize("text", ["", "not json", "{", b"\xff\xfe", "[1, 2]", '"ping"', "42", "null"])
def test_what_is_no_json_object_is_an_invalid_request(text: str | bytes) -> None:
    error = refused(text)
    assert (error.code, error.ref) == ("invalid_request", None)


def test_a_frame_without_a_string_type_is_an_invalid_request() -> None:
    assert refused(frame(chat_id=CHAT)).code == "invalid_request"
    assert refused(frame(type=5)).code == "invalid_request"


def test_an_unknown_type_is_named_and_its_client_msg_id_echoed() -> None:
    error = refused(frame(type="message.sned", client_msg_id="c9"))
    assert (error.code, error.ref) == ("unknown_type", "c9")
    assert "message.sned" in error.message


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"chat_id": CHAT, "client_msg_id": "c1", "text": ""}, "text"),
        ({"chat_id": CHAT, "client_msg_id": "c1", "text": "x" * (TEXT_MAX + 1)}, "text"),
        ({"chat_id": CHAT, "client_msg_id": "c1", "text": 5}, "text"),
        ({"chat_id": "nope", "client_msg_id": "c1", "text": "hi"}, "chat_id"),
        ({"client_msg_id": "c1", "text": "hi"}, "chat_id"),
        ({"chat_id": CHAT, "client_msg_id": "c1"}, "text"),
    ],
)
def test_a_bad_send_names_its_field_and_echoes_its_client_msg_id(fields: dict[str, object], field: str) -> None:
    error = refused(frame(type="message.send", **fields))
    assert (error.code, error.ref) == ("invalid_request", "c1")
    assert f"invalid field: {field}" in error.message


def test_a_nul_character_is_refused_because_postgresql_cannot_store_it() -> None:
    error = refused(frame(type="message.send", chat_id=CHAT, client_msg_id="c1", text="a\u0000b"))
    assert (error.code, error.ref) == ("invalid_request", "c1") and "text" in error.message
    error = refused(frame(type="message.edit", message_id=MESSAGE, text="\u0000"))
    assert error.code == "invalid_request"
    error = refused(frame(type="message.send", chat_id=CHAT, client_msg_id="c\u0000", text="hi"))
    assert (error.code, error.ref) == ("invalid_request", None) and "client_msg_id" in error.message


def test_text_of_exactly_the_maximum_length_is_accepted() -> None:
    parsed = parse_client_frame(frame(type="message.send", chat_id=CHAT, client_msg_id="c", text="x" * TEXT_MAX))
    assert isinstance(parsed.frame, SendFrame)


def test_numbers_are_not_guessed_from_strings() -> None:
    assert refused(frame(type="read", chat_id=CHAT, seq="5")).code == "invalid_request"
    assert refused(frame(type="sync", chat_id=CHAT, after_seq=-1)).code == "invalid_request"
    assert refused(frame(type="sync", chat_id=CHAT, after_seq=1.5)).code == "invalid_request"


def test_a_client_msg_id_on_any_frame_is_echoed() -> None:
    assert refused(frame(type="message.edit", message_id="x", text="t", client_msg_id="e1")).ref == "e1"
    assert parse_client_frame(frame(type="ping", client_msg_id="p1")).ref == "p1"


def test_an_encoded_frame_never_holds_a_raw_newline() -> None:
    message = {"id": MESSAGE, "text": "line one\nline two\r\n"}
    text = encode_frame(message_new_frame(message))
    assert "\n" not in text
    assert orjson.loads(text)["message"]["text"] == "line one\nline two\r\n"


@pytest.mark.parametrize("token", [None, 42, "", "x" * (ACCESS_TOKEN_MAX + 1)])
def test_an_auth_frame_needs_a_token_of_plausible_length(token: object) -> None:
    assert refused(frame(type="auth", token=token)).message.startswith("invalid field: token")
