"""Messages: send, edit, delete, mark read.

The chat agent decides each against the chat's state: a chat the actor is not in is
`not_found`, a message of such a chat too; an edit by anyone but the sender `forbidden`.
A send is idempotent by its `client_msg_id`: a repeat is answered with the message it made.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from gateway.infra import read_store
from gateway.usecases.commands import execute
from gateway.usecases.ports import Actor, Ports
from gateway.usecases.refusal import NOT_FOUND, Refused
from schemas.commands import (
    DeleteMessage,
    EditMessage,
    MarkRead,
    MessageDeletedResult,
    MessageResult,
    ReadResult,
    SendMessage,
)


@dataclass(frozen=True)
class Sent:
    message: dict[str, Any]
    duplicate: bool
    """A repeat of a send already made (same `client_msg_id`): `message` is the first one's."""


@dataclass(frozen=True)
class Deleted:
    chat_id: str
    message_id: str
    seq: int


async def send_message(ports: Ports, actor: Actor, chat_id: uuid.UUID, client_msg_id: str, text: str) -> Sent:
    reply = await execute(ports, actor, SendMessage(chat_id=chat_id, client_msg_id=client_msg_id, text=text))
    return Sent(reply.result_as(MessageResult).message.model_dump(mode="json"), reply.duplicate)


async def edit_message(ports: Ports, actor: Actor, message_id: uuid.UUID, text: str) -> dict[str, Any]:
    """The message as edited."""
    chat_id = await chat_of(ports, message_id)
    reply = await execute(ports, actor, EditMessage(chat_id=chat_id, message_id=message_id, text=text))
    return reply.result_as(MessageResult).message.model_dump(mode="json")


async def delete_message(ports: Ports, actor: Actor, message_id: uuid.UUID) -> Deleted:
    chat_id = await chat_of(ports, message_id)
    reply = await execute(ports, actor, DeleteMessage(chat_id=chat_id, message_id=message_id))
    deleted = reply.result_as(MessageDeletedResult)
    return Deleted(str(deleted.chat_id), str(deleted.message_id), deleted.seq)


async def mark_read(ports: Ports, actor: Actor, chat_id: uuid.UUID, seq: int) -> int:
    """The actor's read position in the chat now: `seq`, or the chat's last if it is past it."""
    reply = await execute(ports, actor, MarkRead(chat_id=chat_id, seq=seq))
    return reply.result_as(ReadResult).seq


async def chat_of(ports: Ports, message_id: uuid.UUID) -> uuid.UUID:
    """The chat a message is in, which its commands are keyed by; `not_found` for no message."""
    message = await read_store.message_by_id(ports.pool, message_id)
    if message is None:
        raise Refused(NOT_FOUND, "no such message")
    return uuid.UUID(message["chat_id"])
