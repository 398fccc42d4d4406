"""Every seq the server accepts fits PostgreSQL's bigint (issue 10, row 10): a larger one is an
`invalid_request` naming the field, never an error deep in a query."""

from __future__ import annotations

import uuid

import orjson
import pytest
from pydantic import ValidationError

from schemas.api import MessagePage
from schemas.commands import MarkRead
from schemas.frames import INVALID_REQUEST, FrameRefused, ReadFrame, SyncFrame, parse_client_frame
from schemas.text import PG_BIGINT_MAX

CHAT = str(uuid.uuid4())
FRAMES = [("sync", "after_seq"), ("read", "seq")]


def frame(kind: str, field: str, value: int) -> str:
    return orjson.dumps({"type": kind, "chat_id": CHAT, field: value, "client_msg_id": "r1"}).decode()


@pytest.mark.parametrize(("kind", "field"), FRAMES)
@pytest.mark.parametrize("value", [PG_BIGINT_MAX + 1, 2**64 - 1, -1])
def test_a_frame_seq_outside_bigint_is_refused_naming_the_field(kind: str, field: str, value: int) -> None:
    with pytest.raises(FrameRefused) as caught:
        parse_client_frame(frame(kind, field, value))
    assert (caught.value.code, caught.value.ref) == (INVALID_REQUEST, "r1")
    assert caught.value.message.startswith(f"invalid field: {field} ")


def test_a_seq_wider_than_64_bits_is_refused_as_json() -> None:
    """orjson refuses integers it cannot hold; the frame is refused all the same."""
    text = f'{{"type": "sync", "chat_id": "{CHAT}", "after_seq": {2**64}}}'
    with pytest.raises(FrameRefused) as caught:
        parse_client_frame(text)
    assert caught.value.code == INVALID_REQUEST


@pytest.mark.parametrize(("kind", "field"), FRAMES)
@pytest.mark.parametrize("value", [0, PG_BIGINT_MAX])
def test_a_frame_seq_at_either_end_of_bigint_is_accepted(kind: str, field: str, value: int) -> None:
    parsed = parse_client_frame(frame(kind, field, value)).frame
    assert isinstance(parsed, SyncFrame | ReadFrame) and getattr(parsed, field) == value


def test_a_read_command_is_bounded_as_its_frame() -> None:
    assert MarkRead(chat_id=uuid.UUID(CHAT), seq=PG_BIGINT_MAX).seq == PG_BIGINT_MAX
    with pytest.raises(ValidationError):
        MarkRead(chat_id=uuid.UUID(CHAT), seq=PG_BIGINT_MAX + 1)


@pytest.mark.parametrize("field", ["before", "after"])
def test_a_page_bound_outside_bigint_is_refused_naming_it(field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        MessagePage.model_validate({field: str(PG_BIGINT_MAX + 1)})
    assert caught.value.errors()[0]["loc"] == (field,)
    assert getattr(MessagePage.model_validate({field: str(PG_BIGINT_MAX)}), field) == PG_BIGINT_MAX
