"""Messages: send, edit, delete, mark read.

The chat agent decides each against the chat's state: a chat the actor is not in is
`not_found`, a message of such a chat too; an edit by anyone but the sender `forbidden`.
A send is idempotent by its `client_msg_id`: a repeat is answered with the message it made.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

from aiokafka.errors import KafkaError

from gateway.infra import read_store
from gateway.usecases.commands import execute
from gateway.usecases.ports import Actor, Ports
from gateway.usecases.refusal import NOT_FOUND, Refused, unavailable
from schemas.commands import (
    DeleteMessage,
    EditMessage,
    MarkRead,
    MessageDeletedResult,
    MessageResult,
    ReadResult,
    Reply,
    SendMessage,
)
from schemas.models import message_id_for


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
    """The text is sealed (docs/erasure.md) where the gateway seals: a repeat's answer is the
    first send's message, opened with the first send's key."""
    if ports.texts is None:
        reply = await execute(ports, actor, SendMessage(chat_id=chat_id, client_msg_id=client_msg_id, text=text))
        return Sent(reply.result_as(MessageResult).message.model_dump(mode="json"), reply.duplicate)
    message_id = message_id_for(chat_id, actor.user_id, client_msg_id)
    sealed, key_landed = await ports.texts.seal_message(message_id, actor.user_id, text)
    body = SendMessage(chat_id=chat_id, client_msg_id=client_msg_id, sealed_text=sealed)
    reply = await execute(ports, actor, body)
    await key_durable(key_landed)
    return Sent(await opened(ports, reply), reply.duplicate)


async def edit_message(ports: Ports, actor: Actor, message_id: uuid.UUID, text: str) -> dict[str, Any]:
    """The message as edited."""
    chat_id = await chat_of(ports, message_id)
    if ports.texts is None:
        reply = await execute(ports, actor, EditMessage(chat_id=chat_id, message_id=message_id, text=text))
        return reply.result_as(MessageResult).message.model_dump(mode="json")
    sealed, key_landed = await ports.texts.seal_message(message_id, actor.user_id, text)
    reply = await execute(ports, actor, EditMessage(chat_id=chat_id, message_id=message_id, sealed_text=sealed))
    await key_durable(key_landed)
    return await opened(ports, reply)


async def key_durable(landed: asyncio.Future[Any]) -> None:
    """The text's key is on the broker, or the write is not acknowledged (`unavailable`): an
    accepted text whose key is lost reads as erased (docs/erasure.md), reported, never guessed."""
    try:
        await landed
    except KafkaError:
        raise unavailable("the text's key could not be stored: retry the same request") from None


async def opened(ports: Ports, reply: Reply) -> dict[str, Any]:
    """The reply's message as JSON, its text opened (a reply carries it as the agent keeps it);
    a repeat's from the read models, which hold it (its key is the first send's, maybe older
    than the keys this gateway keeps)."""
    message = reply.result_as(MessageResult).message.model_dump(mode="json")
    if ports.texts is None:
        return message
    if reply.duplicate:
        stored = await read_store.message_by_id(ports.pool, uuid.UUID(message["id"]))
        if stored is not None:
            return stored
    return await ports.texts.open_message(message)


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
