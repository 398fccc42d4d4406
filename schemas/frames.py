"""WebSocket frames (contract v1, "WebSocket"): what a client may send, what the server sends.

`parse_client_frame` turns one text frame into a `ClientFrame` or raises `FrameRefused` with the
`error` frame's code (`invalid_request` or `unknown_type`), a message naming the first bad field
and the `ref` to echo. Unknown extra fields are ignored, so a client may add its own (a
`client_msg_id` on any frame is echoed as `ref` when that frame is refused). Field types are
strict: `"seq": "5"` is refused rather than guessed at.

Server frames are built here too, so that their shapes live next to the client's.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal, NamedTuple

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, TypeAdapter, ValidationError

from schemas.commands import CLIENT_MSG_ID_MAX, TEXT_MAX
from schemas.text import PG_BIGINT_MAX, Clean

INVALID_REQUEST = "invalid_request"
UNKNOWN_TYPE = "unknown_type"


class FrameRefused(ValueError):
    """A client frame that gets an `error` frame back; the socket stays open."""

    def __init__(self, code: str, message: str, ref: str | None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref


class ClientFrameBase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


Text = Annotated[StrictStr, Field(min_length=1, max_length=TEXT_MAX), Clean]
ClientMsgId = Annotated[StrictStr, Field(min_length=1, max_length=CLIENT_MSG_ID_MAX), Clean]
Seq = Annotated[StrictInt, Field(ge=0, le=PG_BIGINT_MAX)]


class SendFrame(ClientFrameBase):
    type: Literal["message.send"]
    chat_id: uuid.UUID
    client_msg_id: ClientMsgId
    text: Text


class EditFrame(ClientFrameBase):
    type: Literal["message.edit"]
    message_id: uuid.UUID
    text: Text


class DeleteFrame(ClientFrameBase):
    type: Literal["message.delete"]
    message_id: uuid.UUID


class ReadFrame(ClientFrameBase):
    type: Literal["read"]
    chat_id: uuid.UUID
    seq: Seq


class TypingFrame(ClientFrameBase):
    type: Literal["typing"]
    chat_id: uuid.UUID


class SyncFrame(ClientFrameBase):
    type: Literal["sync"]
    chat_id: uuid.UUID
    after_seq: Seq


class PingFrame(ClientFrameBase):
    type: Literal["ping"]


ACCESS_TOKEN_MAX = 4096
"""Far above a real access token (~300 characters); a longer one is refused without decoding it."""


class AuthFrame(ClientFrameBase):
    """v1.1: a fresh access token of the same user, which moves the socket's deadline to its
    expiry and ties the socket to its session."""

    type: Literal["auth"]
    token: Annotated[StrictStr, Field(min_length=1, max_length=ACCESS_TOKEN_MAX)]


ClientFrame = Annotated[
    SendFrame | EditFrame | DeleteFrame | ReadFrame | TypingFrame | SyncFrame | PingFrame | AuthFrame,
    Field(discriminator="type"),
]
CLIENT_FRAME: TypeAdapter[ClientFrame] = TypeAdapter(ClientFrame)
CLIENT_FRAME_TYPES = frozenset(
    ("message.send", "message.edit", "message.delete", "read", "typing", "sync", "ping", "auth")
)
SESSION_ENDED_CLOSE_CODE = 4001
SESSION_ENDED_REASON = "session_ended"
"""v1.1: the close of a socket whose session ended (logout, a killed refresh family, an erased
account) or whose access token expired without an `auth` frame; the client refreshes and reconnects."""


class ParsedFrame(NamedTuple):
    frame: ClientFrame
    ref: str | None
    """What an `error` frame about this frame echoes (its `client_msg_id`, if any)."""


def parse_client_frame(text: str | bytes) -> ParsedFrame:
    """The frame in `text` and its ref, or `FrameRefused` saying what is wrong with it."""
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise FrameRefused(INVALID_REQUEST, "a frame is a JSON object", None) from None
    if not isinstance(data, dict):
        raise FrameRefused(INVALID_REQUEST, "a frame is a JSON object", None)
    ref = ref_of(data)
    kind = data.get("type")
    if not isinstance(kind, str):
        raise FrameRefused(INVALID_REQUEST, "a frame needs a string `type`", ref)
    if kind not in CLIENT_FRAME_TYPES:
        raise FrameRefused(UNKNOWN_TYPE, f"unknown frame type {kind[:64]!r}", ref)
    try:
        return ParsedFrame(CLIENT_FRAME.validate_python(data), ref)
    except ValidationError as error:
        raise FrameRefused(INVALID_REQUEST, describe(error), ref) from None


def ref_of(data: dict[str, Any]) -> str | None:
    """What an `error` frame echoes: the frame's `client_msg_id`, if it is a plausible one."""
    ref = data.get("client_msg_id")
    if isinstance(ref, str) and 0 < len(ref) <= CLIENT_MSG_ID_MAX and "\x00" not in ref:
        return ref
    return None


def describe(error: ValidationError) -> str:
    """`invalid field: text (String should have at most 4000 characters)`: the first bad field.

    The discriminator is the first element of pydantic's location; it names no field.
    """
    first = error.errors(include_url=False)[0]
    location = [str(part) for part in first["loc"][1:]] or ["frame"]
    return f"invalid field: {'.'.join(location)} ({first['msg']})"


# --- server frames ------------------------------------------------------------------------------


def error_frame(code: str, message: str, ref: str | None = None, retry_after_ms: int | None = None) -> dict[str, Any]:
    """`retry_after_ms` (v1.1) comes with `rate_limited`: when the same frame would be let through."""
    frame: dict[str, Any] = {"type": "error", "code": code, "message": message, "ref": ref}
    if retry_after_ms is not None:
        frame["retry_after_ms"] = retry_after_ms
    return frame


def ack_frame(client_msg_id: str, message: dict[str, Any]) -> dict[str, Any]:
    return {"type": "message.ack", "client_msg_id": client_msg_id, "message": message}


def message_new_frame(message: dict[str, Any]) -> dict[str, Any]:
    return {"type": "message.new", "message": message}


def message_edited_frame(message: dict[str, Any]) -> dict[str, Any]:
    return {"type": "message.edited", "message": message}


def message_deleted_frame(chat_id: str, message_id: str, seq: int) -> dict[str, Any]:
    return {"type": "message.deleted", "chat_id": chat_id, "message_id": message_id, "seq": seq}


def read_frame(chat_id: str, user_id: str, seq: int) -> dict[str, Any]:
    return {"type": "read", "chat_id": chat_id, "user_id": user_id, "seq": seq}


def typing_frame(chat_id: str, user_id: str) -> dict[str, Any]:
    return {"type": "typing", "chat_id": chat_id, "user_id": user_id}


def presence_frame(user_id: str, online: bool) -> dict[str, Any]:
    return {"type": "presence", "user_id": user_id, "online": online}


def sync_done_frame(chat_id: str, last_seq: int) -> dict[str, Any]:
    return {"type": "sync.done", "chat_id": chat_id, "last_seq": last_seq}


def chat_updated_frame(chat: dict[str, Any]) -> dict[str, Any]:
    """The whole Chat, member list included: to everyone on create, to the added member only on
    an add (contract v1.1), so that no membership change costs members × members bytes."""
    return {"type": "chat.updated", "chat": chat}


def chat_member_added_frame(chat_id: str, user_id: str, role: str) -> dict[str, Any]:
    """A member joined, or (the owner left) took a new role: the client sets `role` for `user_id`."""
    return {"type": "chat.member_added", "chat_id": chat_id, "user_id": user_id, "role": role}


def chat_member_removed_frame(chat_id: str, user_id: str) -> dict[str, Any]:
    return {"type": "chat.member_removed", "chat_id": chat_id, "user_id": user_id}


PONG: dict[str, Any] = {"type": "pong"}


def encode_frame(frame: dict[str, Any]) -> str:
    """The text of a server frame: compact JSON (orjson escapes control characters, so the text
    never holds a raw newline, which `gateway.ws.routing` relies on)."""
    return orjson.dumps(frame).decode()
