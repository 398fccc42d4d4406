"""A reply's result comes back as the kind it was sent as, through the JSON of the reply topic."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from schemas import codec
from schemas.commands import (
    ChatResult,
    MessageDeletedResult,
    MessageResult,
    NoResult,
    ReadResult,
    Reply,
    ReplyResult,
    UserResult,
)
from schemas.models import Chat, Member, Message, User

NOW = datetime.now(UTC)
USER = User(id=uuid.uuid4(), username="alice", display_name="Alice", bio="", created_at=NOW)
MESSAGE = Message(
    id=uuid.uuid4(),
    chat_id=uuid.uuid4(),
    seq=3,
    sender_id=USER.id,
    text="hi",
    client_msg_id="c1",
    created_at=NOW,
)
CHAT = Chat(id=uuid.uuid4(), type="group", title=None, created_at=NOW, members=[Member(user_id=USER.id, role="owner")])
RESULTS: list[ReplyResult] = [
    UserResult(user=USER),
    ChatResult(chat=CHAT),
    MessageResult(message=MESSAGE),
    MessageDeletedResult(chat_id=MESSAGE.chat_id, message_id=MESSAGE.id, seq=3),
    ReadResult(chat_id=MESSAGE.chat_id, seq=3),
    NoResult(),
]


@pytest.mark.parametrize("result", RESULTS, ids=lambda r: type(r).__name__)
def test_each_result_comes_back_as_its_kind(result: ReplyResult) -> None:
    reply = Reply(correlation_id="c", ok=True, result=result)
    back = Reply.model_validate_json(codec.dumps(reply))
    assert back == reply and type(back.result) is type(result)
    assert back.result_as(type(result)) == result


def test_a_refusal_has_an_empty_result_and_the_wrong_kind_is_an_error() -> None:
    refused = Reply.model_validate_json(codec.dumps(Reply(correlation_id="c", ok=False, code="forbidden")))
    assert codec.loads(codec.dumps(refused))["result"] == {}
    with pytest.raises(TypeError, match="NoResult where MessageResult"):
        refused.result_as(MessageResult)
