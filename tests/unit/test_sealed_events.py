"""Message events that carry a sealed text (docs/erasure.md): one of the two texts, read by the
decider as the token it keeps, and by the messages projection as a parameter to open."""

from __future__ import annotations

import uuid
from typing import Any, cast

import pytest
from pydantic import ValidationError

from projections.messages import MESSAGES, TEXT_PARAM, params
from projections.model import Params
from projections.sealed_texts import SealedParam, TextOpener
from runtime.sealing import new_key, seal
from schemas.events import MessageEdited, MessageSent, decode_event, encode_event, new_event
from schemas.sealed import message_key_id
from streams.chat_rules import evolve
from streams.chat_state import ChatState
from tests.memory_chat_store import MemoryChatStore

CHAT, SENDER, MESSAGE = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
KEY_ID = message_key_id(MESSAGE, uuid.uuid4())
TOKEN = seal(new_key(), KEY_ID, "message", MESSAGE, "hello")


def sent(**text: Any) -> MessageSent:
    return MessageSent(
        message_id=MESSAGE, chat_id=CHAT, seq=1, sender_id=SENDER, client_msg_id="c", recipients=[SENDER], **text
    )


def test_a_message_event_carries_exactly_one_text() -> None:
    assert sent(text="hello").carried_text == "hello"
    assert sent(sealed_text=TOKEN).carried_text == TOKEN
    with pytest.raises(ValidationError, match="either text or sealed_text"):
        sent()
    with pytest.raises(ValidationError, match="either text or sealed_text"):
        sent(text="hello", sealed_text=TOKEN)
    with pytest.raises(ValidationError):
        MessageEdited(message_id=MESSAGE, chat_id=CHAT, seq=1)


def test_plain_and_sealed_events_both_read_back_at_version_1() -> None:
    for payload in (sent(text="hello"), sent(sealed_text=TOKEN)):
        event = new_event(payload, aggregate_id=CHAT, event_id=uuid.uuid4(), actor_id=None, correlation_id=None)
        read = decode_event(encode_event(event))
        assert read.version == 1 and read.payload == payload


def test_an_event_of_before_sealing_is_read_as_it_was_written() -> None:
    event = new_event(sent(text="old"), aggregate_id=CHAT, event_id=uuid.uuid4(), actor_id=None, correlation_id=None)
    old = encode_event(event).replace(b',"sealed_text":null', b"")
    assert b"sealed_text" not in old
    assert decode_event(old).payload == sent(text="old")


def test_the_messages_projection_opens_sealed_texts_only() -> None:
    event = new_event(
        sent(sealed_text=TOKEN), aggregate_id=CHAT, event_id=uuid.uuid4(), actor_id=None, correlation_id=None
    )
    param = params(event)[TEXT_PARAM]
    assert isinstance(param, SealedParam) and param == TOKEN
    assert (param.purpose, param.subject_id) == ("message", MESSAGE)
    plain = new_event(sent(text="hi"), aggregate_id=CHAT, event_id=uuid.uuid4(), actor_id=None, correlation_id=None)
    assert type(params(plain)[TEXT_PARAM]) is str
    assert MESSAGES.sealed_params == (TEXT_PARAM,)


async def test_a_batch_without_sealed_texts_is_left_alone() -> None:
    rows: list[Params] = [("message.sent", CHAT, MESSAGE, 1, SENDER, "plain", "c", [SENDER], None)]
    assert await TextOpener().open(cast(Any, None), rows, (TEXT_PARAM,)) is rows


def test_the_decider_keeps_the_token_it_carries() -> None:
    store = MemoryChatStore()
    store.set_chat(
        str(CHAT), ChatState("group", "t", "2026-01-01T00:00:00+00:00", str(SENDER), {str(SENDER): "owner"}, 0)
    )
    evolve(
        store,
        new_event(
            sent(sealed_text=TOKEN), aggregate_id=CHAT, event_id=uuid.uuid4(), actor_id=None, correlation_id=None
        ),
    )
    stored = store.get_message(str(MESSAGE))
    assert stored is not None and stored.text == TOKEN
