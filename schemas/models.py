"""The resources clients see (contract v1: User, Chat, Message), shared by events, replies and frames."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
import uuid
from uuid import UUID

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
    text: str
    client_msg_id: str
    created_at: datetime
    edited_at: datetime | None = None
    deleted: bool = False

class Member(Resource):
    user_id: UUID
    role: Role

class Chat(Resource):
    id: UUID
    type: ChatType
    title: str | None
    created_at: datetime
    members: list[Member]
    last_message: Message | None = None
    unread_count: int = 0

DIRECT_CHAT_NAMESPACE = UUID("0b6a1d2e-8f3c-4b7e-9d41-2c5e7a9f1b03")

def direct_chat_id(a: UUID, b: UUID) -> UUID:
    """The one id of the direct chat of two users: asking twice, from either side, names one chat."""

    first, second = sorted((str(a), str(b)))
    return uuid.uuid5(DIRECT_CHAT_NAMESPACE, f"{first}|{second}")

def fold_username(username: str) -> str:
    """Usernames are case-insensitive: this is the form that is stored and compared."""
    return username.casefold()
