"""Chats and their members: create, add, remove, and read a chat the caller is in.

The chat agent decides who may do what (`streams.chat_rules`): a chat the actor is not in is
`not_found`, a full group `group_full`, an add or remove by a plain member `forbidden`. It does
not know which users exist, so that is checked here, against the read model of users.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from gateway.infra import read_store
from gateway.infra.limits import group_create_cost
from gateway.usecases.commands import execute
from gateway.usecases.ports import Actor, Ports
from gateway.usecases.refusal import FORBIDDEN, INVALID_REQUEST, NOT_FOUND, Refused
from schemas.commands import AddMember, CreateChat, RemoveMember
from schemas.models import ChatType, direct_chat_id


@dataclass(frozen=True)
class ChatWritten:
    chat: dict[str, Any]
    """As the read model shows it to the actor."""
    duplicate: bool
    """A repeat of a creation already made: nothing new happened."""


async def visible_chat(ports: Ports, user_id: uuid.UUID, chat_id: uuid.UUID) -> dict[str, Any]:
    """The chat as `user_id` sees it; `not_found` for a chat they are not in, as if it did not exist."""
    chat = await read_store.chat_for(ports.pool, user_id, chat_id)
    if chat is None:
        raise Refused(NOT_FOUND, "no such chat")
    return chat


async def create_chat(
    ports: Ports, actor: Actor, type_: ChatType, title: str | None, member_ids: list[uuid.UUID]
) -> ChatWritten:
    """A group (a new id), or the direct chat of the actor and one other user (an id derived from
    the two, so that creating it again is a repeat). A group takes more of the write budget the
    more members it has (`gateway.infra.limits.group_create_cost`)."""
    others = sorted({m for m in member_ids if m != actor.user_id}, key=str)
    if type_ == "direct" and len(others) != 1:
        raise Refused(INVALID_REQUEST, "a direct chat has exactly one other member", field="member_ids")
    missing = await first_missing_user(ports, [*others, actor.user_id])
    if missing == str(actor.user_id):
        raise Refused(FORBIDDEN, "the account was erased")
    if missing is not None:
        raise Refused(INVALID_REQUEST, f"no such user: {missing}", field="member_ids")
    if type_ == "direct":
        chat_id = direct_chat_id(ports.settings.chat_id_key.encode(), actor.user_id, others[0])
    else:
        chat_id = uuid.uuid4()
    cost = group_create_cost(len(others) + 1) if type_ == "group" else 1
    command = CreateChat(chat_id=chat_id, type=type_, title=title, member_ids=others)
    reply = await execute(ports, actor, command, cost=cost)
    return ChatWritten(await visible_chat(ports, actor.user_id, chat_id), reply.duplicate)


async def add_member(ports: Ports, actor: Actor, chat_id: uuid.UUID, user_id: uuid.UUID) -> dict[str, Any]:
    """The chat with `user_id` in it."""
    if await first_missing_user(ports, [user_id]) is not None:
        raise Refused(INVALID_REQUEST, "no such user", field="user_id")
    await execute(ports, actor, AddMember(chat_id=chat_id, user_id=user_id))
    return await visible_chat(ports, actor.user_id, chat_id)


async def remove_member(ports: Ports, actor: Actor, chat_id: uuid.UUID, user_id: uuid.UUID) -> None:
    """`user_id` leaves the chat (the actor themself) or is removed from it."""
    await execute(ports, actor, RemoveMember(chat_id=chat_id, user_id=user_id))


async def first_missing_user(ports: Ports, user_ids: list[uuid.UUID]) -> str | None:
    """The first (by id) of `user_ids` that names no user, if any. Checked here, not by the chat
    agent: it keeps no list of users, and would make a chat with a member nobody is."""
    missing = set(user_ids) - await read_store.existing_user_ids(ports.pool, user_ids)
    return sorted(map(str, missing))[0] if missing else None
