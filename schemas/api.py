"""Bodies and query parameters of the REST surface (contract v1), strict and frozen: a 400 names
the field that is wrong."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from schemas.commands import CLIENT_MSG_ID_MAX, TEXT_MAX
from schemas.models import ChatType
from schemas.text import PG_BIGINT_MAX, Clean

USERNAME_PATTERN = r"^[a-z0-9_.]{3,32}$"
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
        import re

        folded = value.casefold()
        if not re.fullmatch(USERNAME_PATTERN, folded):
            raise ValueError("3 to 32 of a-z, 0-9, _ and . (case-insensitive)")
        return folded


class LoginBody(Body):
    username: Annotated[str, Clean] = Field(min_length=1, max_length=64)
    password: Annotated[str, Clean] = Field(min_length=1, max_length=256)


class RefreshBody(Body):
    refresh_token: Annotated[str, Clean] = Field(min_length=1, max_length=512)


class ProfilePatch(Body):
    display_name: Annotated[str, Clean] | None = Field(None, min_length=1, max_length=64)
    bio: Annotated[str, Clean] | None = Field(None, max_length=500)


class CreateChatBody(Body):
    type: ChatType
    member_ids: list[uuid.UUID] = Field(max_length=1000)
    title: Annotated[str, Clean] | None = Field(None, min_length=1, max_length=128)


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


TokenType = Literal["Bearer"]
