"""What the gateway asks of the streams workers, and what they answer.

A command travels on a command topic (`user.commands`, `chat.commands`, `message.send`) with the
name of the asking gateway's reply topic; the worker that decides sends one `Reply` there, with
the same `correlation_id`, once the events it decided are durable (acks=all). See
`gateway/infra/command_bus.py` for the asking side and `docs/architecture.md` for the whole round trip.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, NamedTuple, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, model_validator

from schemas import codec
from schemas.models import Chat, ChatType, Message, User
from schemas.sealed import SEALED_FIELD_MAX, SEALED_TEXT_MAX, plain_or_sealed
from schemas.text import PG_BIGINT_MAX, Clean

TEXT_MAX = 4000
CLIENT_MSG_ID_MAX = 128


class CommandBody(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


SealedField = Annotated[str, Field(min_length=1, max_length=SEALED_FIELD_MAX)]
"""A profile field sealed by the gateway with the account's profile key (`schemas.sealed.profile_key_id`)."""


class Register(CommandBody):
    """Exactly one of `display_name` and `sealed_display_name` (docs/erasure.md)."""

    kind: Literal["user.register"] = "user.register"
    user_id: uuid.UUID
    username: Annotated[str, Clean]
    display_name: Annotated[str, Clean] | None = None
    sealed_display_name: SealedField | None = None
    password_hash: str

    @model_validator(mode="after")
    def _one_display_name(self) -> Register:
        plain_or_sealed(self.display_name, self.sealed_display_name, "display_name")
        if self.display_name is None and self.sealed_display_name is None:
            raise ValueError("a registration carries display_name or sealed_display_name")
        return self


class UpdateProfile(CommandBody):
    """Each field plain, sealed or absent (left as it is); never both plain and sealed."""

    kind: Literal["user.update_profile"] = "user.update_profile"
    user_id: uuid.UUID
    display_name: Annotated[str, Clean] | None = None
    bio: Annotated[str, Clean] | None = None
    sealed_display_name: SealedField | None = None
    sealed_bio: SealedField | None = None

    @model_validator(mode="after")
    def _plain_or_sealed(self) -> UpdateProfile:
        plain_or_sealed(self.display_name, self.sealed_display_name, "display_name")
        plain_or_sealed(self.bio, self.sealed_bio, "bio")
        return self


class EraseAccount(CommandBody):
    """Erase the actor's own account (docs/erasure.md, "Account erasure"): keyed by the folded
    username, so that the partition owning the name decides it and quarantines the name."""

    kind: Literal["user.erase"] = "user.erase"
    user_id: uuid.UUID
    username: str


class ChangePassword(CommandBody):
    """A new password hash for a user who exists, keyed (like a registration) by the folded
    username: the partition that owns the name knows whether its user exists. The gateway checked
    the old password and computed the new hash; the user agent writes it to `user.credentials`."""

    kind: Literal["user.change_password"] = "user.change_password"
    user_id: uuid.UUID
    username: Annotated[str, Clean] = Field(min_length=1, max_length=64)
    """Folded."""
    password_hash: str = Field(min_length=1, max_length=512, pattern=r"^\$argon2")
    rehash: bool = False
    """True for the same password hashed again with today's parameters at a login: no event, and
    no session ends."""


class CreateChat(CommandBody):
    kind: Literal["chat.create"] = "chat.create"
    chat_id: uuid.UUID
    type: ChatType
    title: Annotated[str, Clean] | None = None
    member_ids: list[uuid.UUID]


class AddMember(CommandBody):
    kind: Literal["chat.add_member"] = "chat.add_member"
    chat_id: uuid.UUID
    user_id: uuid.UUID


class RemoveMember(CommandBody):
    kind: Literal["chat.remove_member"] = "chat.remove_member"
    chat_id: uuid.UUID
    user_id: uuid.UUID


ERASED_IDS_MAX = 500
"""The most message ids one `chat.erase_member` names: the gateway sends a chat's in chunks."""


class EraseMember(CommandBody):
    """An erased account leaves `chat_id`, and its messages there named in `message_ids` are
    deleted; its actor is the erased user (whose membership may be gone already)."""

    kind: Literal["chat.erase_member"] = "chat.erase_member"
    chat_id: uuid.UUID
    user_id: uuid.UUID
    message_ids: list[uuid.UUID] = Field(default_factory=list, max_length=ERASED_IDS_MAX)


class CarriesText(CommandBody):
    """A command with a message's text: plain (a gateway of before sealing), or sealed by the
    gateway with a data key it wrote to `content.keys` first (docs/erasure.md); exactly one."""

    text: Annotated[str, Clean] | None = Field(None, min_length=1, max_length=TEXT_MAX)
    sealed_text: str | None = Field(None, min_length=1, max_length=SEALED_TEXT_MAX)

    @model_validator(mode="after")
    def _one_text(self) -> CarriesText:
        if (self.text is None) == (self.sealed_text is None):
            raise ValueError("a message command carries either text or sealed_text")
        return self


class SendMessage(CarriesText):
    kind: Literal["message.send"] = "message.send"
    chat_id: uuid.UUID
    client_msg_id: Annotated[str, Clean] = Field(min_length=1, max_length=CLIENT_MSG_ID_MAX)


class EditMessage(CarriesText):
    kind: Literal["message.edit"] = "message.edit"
    chat_id: uuid.UUID
    message_id: uuid.UUID


class DeleteMessage(CommandBody):
    kind: Literal["message.delete"] = "message.delete"
    chat_id: uuid.UUID
    message_id: uuid.UUID


class MarkRead(CommandBody):
    kind: Literal["message.read"] = "message.read"
    chat_id: uuid.UUID
    seq: int = Field(ge=0, le=PG_BIGINT_MAX)


Body = Annotated[
    Register
    | UpdateProfile
    | EraseAccount
    | ChangePassword
    | CreateChat
    | AddMember
    | RemoveMember
    | EraseMember
    | SendMessage
    | EditMessage
    | DeleteMessage
    | MarkRead,
    Field(discriminator="kind"),
]


class Origin(BaseModel):
    """The socket a command came from, so that it gets `message.ack` instead of `message.new`."""

    model_config = ConfigDict(frozen=True)
    instance_id: str
    connection_id: str


class Command(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    command_id: uuid.UUID
    correlation_id: str
    actor_id: uuid.UUID | None
    reply_to: str | None
    issued_at: datetime
    origin: Origin | None = None
    body: Body


COMMAND = TypeAdapter(Command)


def encode_command(command: Command) -> bytes:
    return codec.dumps(command)


def decode_command(data: bytes) -> Command:
    """Raises ValueError (pydantic's ValidationError is one) for a record that is no command."""
    return COMMAND.validate_json(data)


class Position(BaseModel):
    """Where an event landed: the read-your-writes rule waits for projections to pass it."""

    model_config = ConfigDict(frozen=True)
    topic: str
    partition: int
    offset: int


class ReplyResult(BaseModel):
    """What an accepted command made, as the reply carries it; `extra="forbid"` keeps the kinds
    apart (the JSON names no kind: a deletion's result is a read's plus `message_id`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class NoResult(ReplyResult):
    """A refusal's, or a profile change's (the gateway answers that from the read models)."""


class UserResult(ReplyResult):
    user: User


class ChatResult(ReplyResult):
    chat: Chat
    """As far as the chat agent knows it: `last_message` None and `unread_count` 0."""


class MessageResult(ReplyResult):
    message: Message


class MessageDeletedResult(ReplyResult):
    chat_id: uuid.UUID
    message_id: uuid.UUID
    seq: int


class ReadResult(ReplyResult):
    chat_id: uuid.UUID
    seq: int
    """The reader's position now: the one asked for, or the chat's last `seq` if that is lower."""


def result_kind(value: object) -> str:
    """Which result `value` is, by the keys only its kind has: the reply is read on every write,
    and trying each kind in turn (pydantic's "smart" union) costs twice as much."""
    keys = value if isinstance(value, dict) else getattr(value, "__dict__", {})
    for key in ("message", "user", "chat", "message_id", "seq"):
        if key in keys:
            return key
    return "none"


Result = Annotated[
    Annotated[MessageResult, Tag("message")]
    | Annotated[UserResult, Tag("user")]
    | Annotated[ChatResult, Tag("chat")]
    | Annotated[MessageDeletedResult, Tag("message_id")]
    | Annotated[ReadResult, Tag("seq")]
    | Annotated[NoResult, Tag("none")],
    Discriminator(result_kind),
]
R = TypeVar("R", bound=ReplyResult)


class Reply(BaseModel):
    model_config = ConfigDict(frozen=True)

    correlation_id: str
    ok: bool
    code: str | None = None
    """Why a command was refused: `username_taken`, `forbidden`, `not_found`, `invalid_request`."""
    message: str | None = None
    duplicate: bool = False
    """True when the command had been decided before (an idempotent retry): nothing new happened."""
    result: Result = Field(default_factory=NoResult)
    positions: list[Position] = Field(default_factory=list)

    def result_as(self, kind: type[R]) -> R:
        """The result, which an accepted command of its kind always carries; TypeError else."""
        if not isinstance(self.result, kind):
            raise TypeError(f"a reply with {type(self.result).__name__} where {kind.__name__} was expected")
        return self.result


class Delivery(BaseModel):
    """One record of `message.delivered` as contract v1 has it: a frame for every socket of one
    recipient, keyed by that user's id. No longer written (a `SharedDelivery` names them all),
    still read: a gateway of this code reads what an older streams worker left in the topic."""

    model_config = ConfigDict(frozen=True)

    recipient_id: uuid.UUID
    frame: dict[str, Any]
    skip_connection: str | None = None
    """The socket that sent the command: it gets the ack instead of this frame."""


class SharedDelivery(BaseModel):
    """One record of `message.delivered` (an addition to contract v1): one frame for every socket
    of each of several recipients, keyed by the chat's id. A message is one record, not one per
    member: the frame is written to Kafka once, and the gateway that reads it PUBLISHes it to each
    recipient's channel."""

    model_config = ConfigDict(frozen=True)

    recipient_ids: list[uuid.UUID] = Field(min_length=1)
    frame: dict[str, Any]
    skip_connection: str | None = None
    """The socket that sent the command: it gets the ack instead of this frame."""
    skip_user_id: uuid.UUID | None = None
    """Whose socket `skip_connection` is (the sender): the other recipients are pushed everywhere."""


def encode_delivery(recipient_id: str, frame_json: bytes, skip_connection: str | None) -> bytes:
    """The JSON of a (v1) `Delivery` whose frame is already encoded."""
    return b'{"recipient_id":"%s","frame":%s,"skip_connection":%s}' % (
        str(uuid.UUID(recipient_id)).encode(),
        frame_json,
        orjson.dumps(skip_connection),
    )


def encode_shared_delivery(
    recipient_ids: list[str], frame_json: bytes, skip_connection: str | None, skip_user_id: str | None
) -> bytes:
    """The JSON of a `SharedDelivery` whose frame is already encoded. The ids are written by
    orjson, which escapes whatever they hold: no id can break out of its string (the gateway
    checks that each is a UUID)."""
    return b'{"recipient_ids":%s,"frame":%s,"skip_connection":%s,"skip_user_id":%s}' % (
        orjson.dumps(recipient_ids),
        frame_json,
        orjson.dumps(skip_connection),
        orjson.dumps(skip_user_id),
    )


class DeliveryRecord(NamedTuple):
    """One recipient's part of a delivery as the chat agent decides it, one per recipient of every
    message; the agent writes a frame's consecutive recipients as one `SharedDelivery`. A model
    would cost 2.5 us more each (`Delivery.model_construct` against a tuple), and the recipient
    stays the text it is on the wire."""

    recipient_id: str
    frame: dict[str, Any]
    skip_connection: str | None


class DeliveryBatch(NamedTuple):
    """A record of `message.delivered` as the gateway reads it, whichever its shape: the frame,
    once, and its recipients; `skip_connection` applies to `skip_user_id`'s sockets only."""

    recipient_ids: list[str]
    frame: dict[str, Any]
    skip_connection: str | None
    skip_user_id: str | None


def decode_delivery(data: bytes) -> DeliveryBatch:
    """The recipients and frame of a `message.delivered` record, a `SharedDelivery` or a (v1)
    `Delivery`; ValueError for a record that is neither."""
    value = orjson.loads(data)
    if not isinstance(value, dict):
        raise ValueError("a delivery is a JSON object")
    frame, skip = value.get("frame"), value.get("skip_connection")
    if not isinstance(frame, dict) or not isinstance(skip, (str, type(None))):
        raise ValueError("a delivery has a frame and skip_connection")
    recipients = value.get("recipient_ids")
    if recipients is None:
        recipient = value.get("recipient_id")
        if not isinstance(recipient, str):
            raise ValueError("a delivery has recipient_ids or recipient_id")
        user_id = str(uuid.UUID(recipient))
        return DeliveryBatch([user_id], frame, skip, user_id if skip is not None else None)
    skip_user = value.get("skip_user_id")
    if not isinstance(recipients, list) or not recipients or not all(isinstance(r, str) for r in recipients):
        raise ValueError("recipient_ids is a list of user ids")
    if not isinstance(skip_user, (str, type(None))):
        raise ValueError("skip_user_id is a user id or null")
    return DeliveryBatch(
        [str(uuid.UUID(r)) for r in recipients], frame, skip, str(uuid.UUID(skip_user)) if skip_user else None
    )
