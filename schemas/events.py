"""The events of the log: one envelope (contract v1, "Kafka") and a payload model per type.

Every type has a current `version`. Records written with an older version are brought up to date
when read, in one place: `UPCASTERS` maps `(type, version)` to a function that turns that
version's payload into the next version's. So topics written today still replay after a payload
grows. A record that cannot be read raises a `BadRecord` (`MalformedRecord`, `UnknownEventType`);
consumers log it, count it and move on.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas import codec
from schemas.models import ChatType, Member, Role
from schemas.sealed import plain_or_sealed

EVENT_NAMESPACE = uuid.UUID("6f1c7f53-3b55-4d3c-9a53-0d8f3d0a6c11")


class BadRecord(ValueError):
    """A record of an event topic that cannot be turned into an event."""


class MalformedRecord(BadRecord):
    pass


class UnknownEventType(BadRecord):
    pass


class Payload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class UserRegistered(Payload):
    """Exactly one of `display_name` (plain, events written before profiles were sealed) and
    `sealed_display_name` (sealed with the account's profile key `profile:<user_id>`,
    docs/erasure.md); both shapes are version 1, as `CarriesText`'s."""

    user_id: uuid.UUID
    username: str
    display_name: str | None = None
    sealed_display_name: str | None = None
    bio: str = ""
    password_hash: str | None = None
    """Only in events written before the hash moved to `user.credentials` (docs/erasure.md): the
    argon2id hash the gateway computed. Still read (its hash logs in while no credential record of
    the user exists); never written any more. Both shapes are version 1: a projection of before
    refuses a hashless one as malformed rather than storing a user who cannot log in, so the
    projections worker is upgraded first (docs/operations.md)."""

    @model_validator(mode="after")
    def _one_display_name(self) -> UserRegistered:
        plain_or_sealed(self.display_name, self.sealed_display_name, "display_name")
        if self.display_name is None and self.sealed_display_name is None:
            raise ValueError("a registration carries display_name or sealed_display_name")
        return self

    @property
    def carried_display_name(self) -> str:
        """The display name as the event carries it: the sealed token, or the plain name of an old event."""
        return self.sealed_display_name if self.sealed_display_name is not None else self.display_name or ""


class PasswordChanged(Payload):
    """The user changed their password (the new hash is in `user.credentials`, never here). A
    rehash at login (new argon2 parameters, same password) is no event: see `streams.user_rules`."""

    user_id: uuid.UUID


class ProfileUpdated(Payload):
    """Each field plain, sealed (with the account's profile key) or absent (null leaves it as it is)."""

    user_id: uuid.UUID
    display_name: str | None = None
    bio: str | None = None
    sealed_display_name: str | None = None
    sealed_bio: str | None = None

    @model_validator(mode="after")
    def _plain_or_sealed(self) -> ProfileUpdated:
        plain_or_sealed(self.display_name, self.sealed_display_name, "display_name")
        plain_or_sealed(self.bio, self.sealed_bio, "bio")
        return self


class UserErased(Payload):
    """The account is gone (docs/erasure.md): its profile key shredded, its name claimed until
    `free_after` (`USERNAME_QUARANTINE`), its messages deleted chat by chat after it."""

    user_id: uuid.UUID
    free_after: datetime


class ChatCreated(Payload):
    chat_id: uuid.UUID
    type: ChatType
    title: str | None
    created_by: uuid.UUID
    members: list[Member]


class MemberAdded(Payload):
    chat_id: uuid.UUID
    user_id: uuid.UUID
    role: Role
    added_by: uuid.UUID


RemovalReason = Literal["left", "removed", "erased"]
"""`erased`: the member's account was erased (its messages in the chat are deleted with it)."""


class MemberRemoved(Payload):
    chat_id: uuid.UUID
    user_id: uuid.UUID
    removed_by: uuid.UUID
    reason: RemovalReason


class RoleChanged(Payload):
    chat_id: uuid.UUID
    user_id: uuid.UUID
    role: Role


class CarriesText(Payload):
    """A payload with a message's text: plain in events written before texts were sealed, sealed
    (`schemas/sealed.py`, docs/erasure.md) from then on; exactly one of the two.

    Both shapes are version 1: a reader of before sealing refuses a sealed event as malformed
    (its `text` is missing), never reads it as some other text; and the log's many plain events
    keep the rebuild's fast path (`projections/decoding.py` reads the current version only)."""

    text: str | None = None
    """The plain text (events written before sealing)."""
    sealed_text: str | None = None
    """The text sealed with the data key of this version of the message (key `message:<message_id>:...`)."""

    @model_validator(mode="after")
    def _one_text(self) -> CarriesText:
        if (self.text is None) == (self.sealed_text is None):
            raise ValueError("a message event carries either text or sealed_text")
        return self

    @property
    def carried_text(self) -> str:
        """The text as the event carries it: the sealed token, or the plain text of an old event."""
        return self.sealed_text if self.sealed_text is not None else self.text or ""


class MessageSent(CarriesText):
    message_id: uuid.UUID
    chat_id: uuid.UUID
    seq: int = Field(ge=1)
    sender_id: uuid.UUID
    client_msg_id: str
    recipients: list[uuid.UUID]
    """The chat's members when it was sent, the sender included."""


class MessageEdited(CarriesText):
    message_id: uuid.UUID
    chat_id: uuid.UUID
    seq: int


class MessageDeleted(Payload):
    message_id: uuid.UUID
    chat_id: uuid.UUID
    seq: int
    deleted_by: uuid.UUID


class ReadMarkerMoved(Payload):
    chat_id: uuid.UUID
    user_id: uuid.UUID
    seq: int = Field(ge=0)


EVENT_TYPES: dict[str, tuple[int, type[Payload]]] = {
    "user.registered": (1, UserRegistered),
    "user.profile_updated": (1, ProfileUpdated),
    "user.erased": (1, UserErased),
    "user.password_changed": (1, PasswordChanged),
    "chat.created": (1, ChatCreated),
    "chat.member_added": (1, MemberAdded),
    "chat.member_removed": (1, MemberRemoved),
    "chat.role_changed": (1, RoleChanged),
    "message.sent": (1, MessageSent),
    "message.edited": (1, MessageEdited),
    "message.deleted": (1, MessageDeleted),
    "message.read": (1, ReadMarkerMoved),
}
TYPE_OF: dict[type[Payload], str] = {model: name for name, (_, model) in EVENT_TYPES.items()}

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
UPCASTERS: dict[tuple[str, int], Upcaster] = {}
"""(type, version) -> the payload of version + 1. Add one here whenever a type's version grows."""


class Envelope(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    event_id: uuid.UUID
    type: str
    version: int = Field(ge=1)
    aggregate_id: uuid.UUID
    occurred_at: datetime
    actor_id: uuid.UUID | None
    correlation_id: str | None
    payload: dict[str, Any]


class Event(BaseModel):
    """An envelope whose payload is parsed into the model of its type, at its current version."""

    model_config = ConfigDict(frozen=True)

    event_id: uuid.UUID
    type: str
    version: int
    aggregate_id: uuid.UUID
    occurred_at: datetime
    actor_id: uuid.UUID | None
    correlation_id: str | None
    payload: Payload

    def envelope(self) -> dict[str, Any]:
        return {
            "event_id": str(self.event_id),
            "type": self.type,
            "version": self.version,
            "aggregate_id": str(self.aggregate_id),
            "occurred_at": self.occurred_at.isoformat(),
            "actor_id": str(self.actor_id) if self.actor_id else None,
            "correlation_id": self.correlation_id,
            "payload": self.payload.model_dump(mode="json"),
        }


def event_id_for(*parts: object) -> uuid.UUID:
    """A deterministic event id: deciding the same command twice names the same event."""
    return uuid.uuid5(EVENT_NAMESPACE, "|".join(str(p) for p in parts))


def new_event(
    payload: Payload,
    *,
    aggregate_id: uuid.UUID,
    event_id: uuid.UUID,
    actor_id: uuid.UUID | None,
    correlation_id: str | None,
    occurred_at: datetime | None = None,
) -> Event:
    name = TYPE_OF[type(payload)]
    return Event(
        event_id=event_id,
        type=name,
        version=EVENT_TYPES[name][0],
        aggregate_id=aggregate_id,
        occurred_at=occurred_at or datetime.now(UTC),
        actor_id=actor_id,
        correlation_id=correlation_id,
        payload=payload,
    )


def encode_event(event: Event) -> bytes:
    return codec.dumps(event.envelope())


def upcast(
    type_: str, version: int, payload: dict[str, Any], upcasters: Mapping[tuple[str, int], Upcaster]
) -> dict[str, Any]:
    current = EVENT_TYPES[type_][0]
    if version > current:
        raise MalformedRecord(f"{type_} version {version} is newer than this code knows ({current})")
    while version < current:
        step = upcasters.get((type_, version))
        if step is None:
            raise MalformedRecord(f"no upcaster for {type_} version {version}")
        payload = step(payload)
        version += 1
    return payload


def decode_event(data: bytes | None, upcasters: Mapping[tuple[str, int], Upcaster] = UPCASTERS) -> Event:
    """The event in `data`, at its type's current version; a `BadRecord` if it is none."""
    if not data:
        raise MalformedRecord("empty record")
    try:
        envelope = Envelope.model_validate(codec.loads(data))
    except (ValueError, ValidationError) as error:
        raise MalformedRecord(f"not an event envelope: {error}".splitlines()[0]) from None
    if envelope.type not in EVENT_TYPES:
        raise UnknownEventType(f"unknown event type {envelope.type!r}")
    payload = upcast(envelope.type, envelope.version, envelope.payload, upcasters)
    try:
        parsed = EVENT_TYPES[envelope.type][1].model_validate(payload)
    except ValidationError as error:
        raise MalformedRecord(f"bad {envelope.type} payload: {error}".splitlines()[0]) from None
    return Event(
        **envelope.model_dump(exclude={"payload", "version"}),
        version=EVENT_TYPES[envelope.type][0],
        payload=parsed,
    )
