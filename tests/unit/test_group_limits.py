"""The bound on `member_ids` (contract v1.1, "Group size"): refused by the schema, before any
read or command, as `group_full`, when the list cannot make a group of at most `MAX_GROUP_MEMBERS`."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from schemas.api import (
    GROUP_FULL,
    GROUP_MEMBERS_CEILING,
    GROUP_MEMBERS_DEFAULT,
    MAX_GROUP_MEMBERS_CONTEXT,
    CreateChatBody,
)


def body(count: int) -> dict[str, object]:
    return {"type": "group", "member_ids": [str(uuid.uuid4()) for _ in range(count)]}


def test_member_ids_are_bounded_by_the_default_limit() -> None:
    assert len(CreateChatBody.model_validate(body(GROUP_MEMBERS_DEFAULT)).member_ids) == GROUP_MEMBERS_DEFAULT
    with pytest.raises(ValidationError) as refused:
        CreateChatBody.model_validate(body(GROUP_MEMBERS_DEFAULT + 1))
    assert [(e["loc"], e["type"]) for e in refused.value.errors()] == [(("member_ids",), GROUP_FULL)]


def test_member_ids_follow_the_limit_the_gateway_passes() -> None:
    context = {MAX_GROUP_MEMBERS_CONTEXT: 3}
    assert CreateChatBody.model_validate(body(3), context=context)
    with pytest.raises(ValidationError):
        CreateChatBody.model_validate(body(4), context=context)


def test_a_list_past_the_ceiling_is_group_full_too() -> None:
    with pytest.raises(ValidationError) as refused:
        CreateChatBody.model_validate(body(GROUP_MEMBERS_CEILING + 1), context={MAX_GROUP_MEMBERS_CONTEXT: 1000})
    assert refused.value.errors()[0]["type"] == GROUP_FULL
