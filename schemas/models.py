"""The resources clients see (contract v1: User, Chat, Message), shared by events, replies and frames."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import Literal
from uuid import UUID, uuid5

from pydantic import BaseModel, ConfigDict

ChatType = Literal["direct", "group"]
Role = Literal["owner", "admin", "member"]


class Resource(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class User(Resource):
    id: UUID
    username: str
    display_name: str
    bio: str
    created_at: datetime


class Message(Resource):
    id: UUID
    chat_id: UUID
    seq: int
    sender_id: UUID
    text: str | None
    """None for a deleted message of an erased account (contract v1.1); "" once deleted otherwise."""
    client_msg_id: str
    created_at: datetime
    edited_at: datetime | None = None
    deleted: bool = False


class Member(Resource):
    user_id: UUID
    role: Role


class ReadMarker(Resource):
    """*(addition)* Where a member of a chat has read up to (0: nothing yet); the `read` frame
    moves it."""

    user_id: UUID
    seq: int


class Chat(Resource):
    id: UUID
    type: ChatType
    title: str | None
    created_at: datetime
    members: list[Member]
    last_message: Message | None = None
    unread_count: int = 0


MESSAGE_NAMESPACE = UUID("a3d0c8a4-51f4-4c38-8f4e-3e6b93f0e2aa")


def message_id_for(chat_id: UUID, sender_id: UUID, client_msg_id: str) -> UUID:
    """Deterministic, so that deciding a send twice (after a crash) names one message; and the
    gateway knows it before the send is decided (a sealed text is bound to its message)."""
    return uuid5(MESSAGE_NAMESPACE, f"{chat_id}|{sender_id}|{client_msg_id}")


def direct_chat_id(key: bytes, a: UUID, b: UUID) -> UUID:
    """The one id of the direct chat of two users: asking twice, from either side, names one chat.

    Keyed with the deployment's `CHAT_ID_KEY` (HMAC-SHA256 of the sorted pair, the first 128 bits
    made a version 8 UUID), so that nobody can compute the id of the chat of two other users, as
    anyone could from the pair alone. A new key gives every pair a new id: the key never changes.
    """
    if not key:
        raise ValueError("a direct chat id needs the deployment's CHAT_ID_KEY")
    first, second = sorted((str(a), str(b)))
    digest = bytearray(hmac.new(key, f"{first}|{second}".encode(), hashlib.sha256).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x80  # version 8: custom
    digest[8] = (digest[8] & 0x3F) | 0x80  # the RFC 9562 variant
    return UUID(bytes=bytes(digest))


def fold_username(username: str) -> str:
    """Usernames are case-insensitive: this is the form that is stored and compared."""
    return username.casefold()
