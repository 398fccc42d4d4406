"""Bodies and query parameters of the REST surface (contract v1), strict and frozen: a 400 names
the field that is wrong."""

from __future__ import annotations

import re
import uuid
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from schemas.commands import CLIENT_MSG_ID_MAX, TEXT_MAX
from schemas.models import ChatType, fold_username
from schemas.text import PG_BIGINT_MAX, Clean

USERNAME_PATTERN = r"^[a-z0-9_.]{3,32}$"
GROUP_MEMBERS_DEFAULT = 500
"""`MAX_GROUP_MEMBERS` unless set: how many members a group holds, its creator included."""
GROUP_MEMBERS_CEILING = 1000
"""The most `MAX_GROUP_MEMBERS` may be set to. Every message of a group is one delivery record
per member, and its create one whole Chat (a member list) per member: members² bytes."""
GROUP_FULL = "group_full"
"""The contract's code for a group past `MAX_GROUP_MEMBERS` (409), also the validation error's type."""
MAX_GROUP_MEMBERS_CONTEXT = "max_group_members"
"""The validation context key by which the gateway passes its `MAX_GROUP_MEMBERS` to `CreateChatBody`."""
Username = Annotated[str, StringConstraints(min_length=3, max_length=32), Clean]


class Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=False)


class RegisterBody(Body):
    username: Username
    password: Annotated[str, Clean] = Field(min_length=8, max_length=256)
    display_name: Annotated[str, Clean] | None = Field(None, min_length=1, max_length=64)

    @field_validator("username")
    @classmethod
    def fold(cls, value: str) -> str:
        folded = fold_username(value)
        if not re.fullmatch(USERNAME_PATTERN, folded):
            raise ValueError("3 to 32 of a-z, 0-9, _ and . (case-insensitive)")
        return folded


class LoginBody(Body):
    username: Annotated[str, Clean] = Field(min_length=1, max_length=64)
    password: Annotated[str, Clean] = Field(min_length=1, max_length=256)


class EraseAccountBody(Body):
    """`DELETE /api/v1/users/me`: the account's password, asked again before it is erased."""

    password: Annotated[str, Clean] = Field(min_length=1, max_length=256)


class PasswordChangeBody(Body):
    """`POST /api/v1/users/me/password`: the new password is bound like a registration's."""

    old_password: Annotated[str, Clean] = Field(min_length=1, max_length=256)
    new_password: Annotated[str, Clean] = Field(min_length=8, max_length=256)


class RefreshBody(Body):
    refresh_token: Annotated[str, Clean] = Field(min_length=1, max_length=512)


class ProfilePatch(Body):
    display_name: Annotated[str, Clean] | None = Field(None, min_length=1, max_length=64)
    bio: Annotated[str, Clean] | None = Field(None, max_length=500)


class CreateChatBody(Body):
    type: ChatType
    member_ids: list[uuid.UUID]
    title: Annotated[str, Clean] | None = Field(None, min_length=1, max_length=128)

    @field_validator("member_ids")
    @classmethod
    def bounded(cls, value: list[uuid.UUID], info: ValidationInfo) -> list[uuid.UUID]:
        """No more ids than a group may hold (the context's limit, else the default): a longer
        list cannot make a valid chat, so it is refused before any read or command, with the
        contract's `group_full` (409) as the error type. The limit counting the creator is the
        chat agent's to enforce. The body's 64 KiB bound caps how long the list can be at all."""
        context = info.context if isinstance(info.context, dict) else {}
        limit = int(context.get(MAX_GROUP_MEMBERS_CONTEXT, GROUP_MEMBERS_DEFAULT))
        if len(value) > limit:
            raise PydanticCustomError(GROUP_FULL, "a group holds at most {limit} members", {"limit": limit})
        return value


class AddMemberBody(Body):
    user_id: uuid.UUID


class PostMessageBody(Body):
    text: Annotated[str, Clean] = Field(min_length=1, max_length=TEXT_MAX)
    client_msg_id: Annotated[str, Clean] = Field(min_length=1, max_length=CLIENT_MSG_ID_MAX)


class UserSearch(Body):
    q: Annotated[str, Clean] = Field("", max_length=32)
    limit: int = Field(20, ge=1, le=100)


class MessagePage(Body):
    before: int | None = Field(None, ge=1, le=PG_BIGINT_MAX)
    after: int | None = Field(None, ge=0, le=PG_BIGINT_MAX)
    limit: int = Field(50, ge=1, le=200)
